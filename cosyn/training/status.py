"""status.json: the one file another process (the studio) polls to follow a run."""

from __future__ import annotations

import json
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


def read_status(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
