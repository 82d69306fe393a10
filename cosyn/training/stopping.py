"""Stopping a run cleanly: SIGINT/SIGTERM become a request to save first."""

from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopFlag:
    """SIGINT/SIGTERM become a request to save and stop, until `restore` hands them back (train()
    also runs inside other programs: the studio's tests, a notebook)."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._previous = {sig: signal.signal(sig, self._set) for sig in STOP_SIGNALS}

    def _set(self, signum, _frame) -> None:
        self.reason = f"received {signal.Signals(signum).name}"

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def ignore_stop_signals(_worker_id: int) -> None:
    """Ctrl-C, `timeout` and `kill -- -PGID` signal the whole process group: a data worker that died of
    it would crash the trainer before it could save. The trainer stops its workers itself."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
