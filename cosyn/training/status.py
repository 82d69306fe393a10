"""status.json: the one file another process (the studio) polls to follow a run."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from cosyn.io.fileio import atomic_write


class StatusFile:
    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path, self.enabled = Path(path), enabled
        self.data: dict[str, Any] = {}

    def update(self, **fields: Any) -> None:
        if not self.enabled:
            return
        self.data.update(fields, updated=time.time())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.data)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text))  # readers never see half a file


ACTIVE_STATES = ("loading", "running")


def read_status(path: Path) -> dict[str, Any]:
    """The run's status; one that says loading or running although its process is gone (killed -9,
    out of memory: nothing could write the end) reads as crashed."""
    try:
        status = json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    if not isinstance(status, dict):
        return {}
    pid = status.get("pid")
    if status.get("state") in ACTIVE_STATES and isinstance(pid, int) and not process_exists(pid):
        status = {**status, "state": "crashed", "last_error": f"process {pid} ended without saying so"}
    return status


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
