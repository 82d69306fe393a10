"""The studio's login check: one user:password, and a lockout that makes guessing it slow.

Gradio calls the check with only the typed name and password (no client address), so failures are
counted for the whole studio: after `free_failures` wrong tries in a row every login is refused for
`base_lock_s`, doubling with each further failure up to `max_lock_s`. A right password during a
lockout is refused too (otherwise the lockout would only slow down wrong guesses), and a success
resets the count.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable


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
        with self._lock:
            if self.locked_for() > 0:
                return False
            if right:
                self._failures = 0
                return True
            self._failures += 1
            extra = self._failures - self.free_failures
            if extra >= 0:
                self._locked_until = self._clock() + min(self.base_lock_s * 2 ** extra, self.max_lock_s)
            return False
