"""Errors as readable messages in the browser, never tracebacks."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import gradio as gr

from cosyn.core.layout import LayoutError
from cosyn.data.sample import DataError
from cosyn.model.pipeline import CheckpointError, SamplingCancelled
from cosyn.studio.jobs import JobError
from cosyn.studio.paths import PathError

log = logging.getLogger("cosyn.studio")

# Errors whose message is written for the user; anything else is a bug, logged with its traceback.
EXPECTED = (LayoutError, CheckpointError, DataError, PathError, JobError, SamplingCancelled, ValueError,
            FileNotFoundError, FileExistsError)


def _as_gr_error(e: Exception) -> gr.Error:
    if isinstance(e, gr.Error):  # written for the user by the handler
        e.print_exception = False
        return e
    if not isinstance(e, EXPECTED):
        log.exception("unexpected error in a studio handler")  # a bug: its traceback goes to the log once
        return gr.Error(f"Something went wrong ({type(e).__name__}: {e}). The studio is still usable; "
                        "the server log has the details.", print_exception=False)
    # the user's own mistake: one line in the log, no traceback (Gradio would print one for every gr.Error)
    log.info("refused: %s", e)
    return gr.Error(str(e), print_exception=False)


def readable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a handler (plain or generator) so its exceptions reach the browser as gr.Error.
    functools.wraps keeps the signature, which Gradio reads for gr.Request and gr.SelectData."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any):
            try:
                yield from fn(*args, **kwargs)
            except Exception as e:
                raise _as_gr_error(e) from None
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise _as_gr_error(e) from None
    return wrapper
