"""The studio's login check: one user:password, and a lockout that makes guessing it slow.

Gradio calls the check with only the typed name and password, so failures are counted for the whole
studio: after `free_failures` wrong tries in a row every login is refused for `base_lock_s`, doubling
with each further failure up to `max_lock_s`. A right password during a lockout is refused too
(otherwise the lockout would only slow down wrong guesses), and a success resets the count.

`LoginGate` sits in front of Gradio's login route: it tells the check the client's address (for the
log), and answers a login during a lockout itself, saying for how long logins are locked. Failed
logins and lockouts are logged with the client's address and the name tried, never a password.
"""

from __future__ import annotations

import contextvars
import hmac
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("cosyn.studio.login")
CLIENT = contextvars.ContextVar("cosyn_login_client", default="unknown address")
MAX_LOGGED_NAME = 64  # a pasted novel in the user field stays out of the log


def locked_message(seconds: float) -> str:
    return (f"Too many failed logins: logins are locked for {math.ceil(seconds)} s. "
            "Try again after that, with the right user name and password.")


class LoginGuard:
    def __init__(self, user: str, password: str, free_failures: int = 5, base_lock_s: float = 30.0,
                 max_lock_s: float = 900.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._user, self._password = user.encode(), password.encode()
        self.free_failures, self.base_lock_s, self.max_lock_s = free_failures, base_lock_s, max_lock_s
        self._clock = clock
        self._failures = 0
        self._locked_until = 0.0
        self._lock = threading.Lock()

    def locked_for(self) -> float:
        """Seconds until logins are accepted again (0 when they are)."""
        return max(0.0, self._locked_until - self._clock())

    def __call__(self, user: str, password: str) -> bool:
        # constant-time comparisons: a timing difference would tell how much of a guess was right
        right = hmac.compare_digest(user.encode(), self._user) & hmac.compare_digest(password.encode(),
                                                                                     self._password)
        name, client = user[:MAX_LOGGED_NAME], CLIENT.get()
        with self._lock:
            wait = self.locked_for()
            if wait > 0:
                log.warning("login as %r from %s refused: logins are locked for %d s more", name, client,
                            math.ceil(wait))
                return False
            if right:
                self._failures = 0
                return True
            self._failures += 1
            log.warning("failed login as %r from %s (%d in a row)", name, client, self._failures)
            extra = self._failures - self.free_failures
            if extra >= 0:
                lock_s = min(self.base_lock_s * 2 ** extra, self.max_lock_s)
                self._locked_until = self._clock() + lock_s
                log.warning("logins locked for %d s after %d failed logins in a row (the last from %s)",
                            math.ceil(lock_s), self._failures, client)
            return False


class LoginGate:
    """ASGI middleware in front of Gradio's login route.

    During a lockout it answers a login itself. Gradio's login form shows one fixed "Incorrect
    Credentials" for a 400 and reloads the page for a 200, so a browser (it says so in its Sec-Fetch-Mode
    header) gets a 200 without a session cookie: the reloaded login page then shows the lock in its
    message. Any other client gets 429 with the message and a Retry-After header."""

    def __init__(self, app: Any, guard: LoginGuard) -> None:
        self.app, self.guard = app, guard

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown address",))[0]
        wait = self.guard.locked_for()
        blocks = getattr(scope.get("app"), "blocks", None)
        if blocks is not None:  # the login page's message, read by Gradio for every page it serves
            blocks.auth_message = locked_message(wait) if wait > 0 else None
        if wait > 0 and scope["method"] == "POST" and scope["path"].rstrip("/").endswith("/login"):
            log.warning("login from %s refused: logins are locked for %d s more", client, math.ceil(wait))
            headers = dict(scope.get("headers") or [])
            browser = b"sec-fetch-mode" in headers
            await _answer(send, 200 if browser else 429, locked_message(wait), math.ceil(wait))
            return
        token = CLIENT.set(client)
        try:
            await self.app(scope, receive, send)
        finally:
            CLIENT.reset(token)


async def _answer(send: Callable, status: int, message: str, retry_after_s: int) -> None:
    body = json.dumps({"success": False, "detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"retry-after", str(retry_after_s).encode())]})
    await send({"type": "http.response.body", "body": body})
