"""Small file-system helpers shared by every writer that must never leave half a file."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


# Every temporary the project writes is named `.<final name>.<random>.tmp` (and an old folder stepping
# aside `.<final name>.<random>.old`) beside its final path: one scheme, so one function finds the
# leftovers of a killed process.
def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_leftovers(path: Path) -> list[Path]:
    """Delete what an interrupted write of `path` left beside it (temp files or folders); they never
    became `path`, so nothing of value is lost. Returns what was removed."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return _delete([p for p in path.parent.glob(f"{glob.escape(_temp_prefix(path))}*")
                    if p.name.endswith((".tmp", ".old"))])


def remove_leftovers_in(folder: Path) -> list[Path]:
    """`remove_leftovers` for every final name in `folder`: all of its `.*.tmp` / `.*.old` entries."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return _delete([p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith((".tmp", ".old"))])


def _delete(paths: list[Path]) -> list[Path]:
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return paths


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp)` on a hidden temp file in the same folder, then rename it to `path`:
    readers see all or nothing. The temp name starts with '.' and ends '.tmp', which the folder
    reader ignores."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a hidden temp folder beside `path` to write into; when the block ends it replaces `path`,
    and when the block fails it is removed. Readers see the old folder or the new one, never half of
    one: a non-empty folder cannot be renamed over, so the old one steps aside first, comes back if
    the rename fails, and is deleted only once the new one is in place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)  # an earlier write of this path that a kill -9 cut short
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; what we write is for colleagues to read too
    try:
        yield tmp
        if not path.exists():
            os.replace(tmp, path)
            return
        old = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".old", dir=path.parent))
        os.replace(path, old / path.name)
        try:
            os.replace(tmp, path)
        except BaseException:
            os.replace(old / path.name, path)
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        # BaseException too: an interrupted run must not leave a temp folder behind either
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def dataclass_from_dict(cls: type[T], d: dict[str, Any], what: str) -> T:
    """`cls(**d)`, refusing unknown keys by name: a typo in a config must not be ignored."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown {what} {sorted(unknown)}; known: {sorted(known)}")
    return cls(**d)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


CHECKSUMS_NAME = "checksums.json"


class ChecksumError(ValueError):
    """A file whose sha256 differs from the one recorded beside it when it was written."""


def record_checksum(path: Path) -> str:
    """Record `path`'s sha256 in its folder's checksums.json (for `verified_sha256` at load); the hash."""
    digest = file_sha256(path)
    book = path.parent / CHECKSUMS_NAME
    sums = json.loads(book.read_text()) if book.is_file() else {}
    book.write_text(json.dumps({**sums, path.name: digest}, indent=1, sort_keys=True))
    return digest


def verified_sha256(path: Path) -> str:
    """`path`'s sha256, checked against its folder's checksums.json where one records it (a folder
    written before checksums were kept has none, and loads unchecked)."""
    digest = file_sha256(path)
    book = path.parent / CHECKSUMS_NAME
    if book.is_file():
        try:
            expected = json.loads(book.read_text()).get(path.name)
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
            raise ChecksumError(f"{book}: unreadable ({e})") from None
        if expected is not None and expected != digest:
            raise ChecksumError(f"{path}: sha256 {digest[:12]}… differs from the {expected[:12]}… recorded in "
                                f"{CHECKSUMS_NAME} when it was saved: the file is damaged or was replaced")
    return digest


def check_writable(folder: Path) -> None:
    """Create `folder` if needed and prove a file can be written in it, so that a long job learns of a
    read-only or full destination before it starts rather than after."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check.", suffix=".tmp"):
            pass
    except OSError as e:
        raise OSError(f"{folder}: cannot write there ({e.strerror or e})") from None
