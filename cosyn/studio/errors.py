"""Errors as readable messages in the browser, never tracebacks.

Two ways to show one: `readable` raises gr.Error, which an API client receives as its exception;
`notified` (the page's own handlers) shows a warning toast, and optionally a line in a status
component, and leaves every output as it was. A raised gr.Error would also mark each output of
the event with a red "Error" overlay that stays until closed, and an overlay on an editor (the
layout JSON box) swallows its clicks.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import gradio as gr

from cosyn.core.layout import LayoutError
from cosyn.data.sample import DataError
from cosyn.model.checkpoint import CheckpointError
from cosyn.model.pipeline import SamplingCancelled
from cosyn.studio.jobs import JobError
from cosyn.studio.paths import PathError

log = logging.getLogger("cosyn.studio")

# Errors whose message is written for the user; anything else is a bug, logged with its traceback.
EXPECTED = (LayoutError, CheckpointError, DataError, PathError, JobError, SamplingCancelled, ValueError,
            FileNotFoundError, FileExistsError)


def user_message(e: Exception) -> str:
    """What the user reads for `e`; logs it (a bug with its traceback, a refusal as one line)."""
    if isinstance(e, gr.Error):  # written for the user by the handler
        return e.message
    if not isinstance(e, EXPECTED):
        log.exception("unexpected error in a studio handler")  # a bug: its traceback goes to the log once
        return (f"Something went wrong ({type(e).__name__}: {e}). The studio is still usable; "
                "the server log has the details.")
    # the user's own mistake: one line in the log, no traceback (Gradio would print one for every gr.Error)
    log.info("refused: %s", e)
    return str(e)


def _wrapped(fn: Callable[..., Any], on_error: Callable[[Exception], Any]) -> Callable[..., Any]:
    """`fn` (plain or generator) with its exceptions handed to `on_error`, whose result is returned (or
    yielded). functools.wraps keeps the signature, which Gradio reads for gr.Request and gr.SelectData."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any):
            try:
                yield from fn(*args, **kwargs)
            except Exception as e:
                yield on_error(e)
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            return on_error(e)
    return wrapper


def _raise(e: Exception) -> Any:
    raise gr.Error(user_message(e), print_exception=False) from None


def readable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a handler so its exceptions reach the caller as gr.Error (the API's way)."""
    return _wrapped(fn, _raise)


def notified(status: gr.components.Component | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Wrap a page handler so an exception becomes a warning toast (and "Refused: …" in `status`, which must
    be one of the event's outputs), every other output left as it was: no overlay on any component."""
    def on_error(e: Exception) -> Any:
        message = user_message(e)
        gr.Warning(message, title="Refused")
        return gr.skip() if status is None else {status: f"Refused: {message}"}

    return lambda fn: _wrapped(fn, on_error)
