"""Small file-system helpers shared by every writer that must never leave half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp)` on a hidden temp file in the same folder, then rename it to `path`:
    readers see all or nothing. The temp name starts with '.' and ends '.tmp', which the folder
    reader ignores."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dataclass_from_dict(cls: type[T], d: dict[str, Any], what: str) -> T:
    """`cls(**d)`, refusing unknown keys by name: a typo in a config must not be ignored."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown {what} {sorted(unknown)}; known: {sorted(known)}")
    return cls(**d)
