"""Small file-system helpers shared by every writer that must never leave half a file."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# Every temporary the project writes is named `.cosyn-tmp.<final name>.<host>-<pid>.<random>.tmp` (an
# old folder stepping aside ends `.old` instead) beside its final path: one recognisable scheme, so
# one function finds the leftovers of a killed process and never touches a user's own dot-files.
# The writer's host and pid say whether it is still running: a sharded `augment` (torchrun) or the
# studio writes into a folder while another process starts up in it, and a live writer's temp file
# is not a leftover.
TEMP_PREFIX = ".cosyn-tmp."
TEMP_SUFFIXES = (".tmp", ".old")
_WRITING: set[str] = set()  # this process' temp paths still being written (pid alone cannot tell them)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname()) or "host"


def _temp_prefix(path: Path) -> str:
    return f"{TEMP_PREFIX}{path.name}.{_host()}-{os.getpid()}."


def _is_leftover(p: Path) -> bool:
    """One of our temp names whose writer is gone: a dead pid on this host, or this process but no
    longer being written. Another host's temp files are kept: whether their writer lives is unknowable."""
    name = p.name
    if not (name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIXES)) or str(p) in _WRITING:
        return False
    try:
        host, pid = name[len(TEMP_PREFIX):-4].rsplit(".", 2)[1].rsplit("-", 1)
        pid_n = int(pid)
    except (ValueError, IndexError):
        return False  # not a name we write
    if host != _host():
        return False
    return pid_n == os.getpid() or not _alive(pid_n)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_leftovers(path: Path) -> list[Path]:
    """Delete what an interrupted write of `path` left beside it (temp files or folders); they never
    became `path`, so nothing of value is lost. Returns what was removed."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    mine = f"{TEMP_PREFIX}{path.name}."
    return _delete([p for p in path.parent.iterdir()
                    if p.name.startswith(mine) and p.name[len(mine):].count(".") == 2 and _is_leftover(p)])


def remove_leftovers_in(folder: Path, depth: int = 2) -> list[Path]:
    """Every temp file or folder a killed write left in `folder` and, down to `depth` levels, its
    subfolders (an augment's images/, a run's checkpoints/): run at the start of each command that
    writes into a folder, so no `.tmp` survives a successful rerun. Bounded, because `--out` may be
    a big folder of the user's; symlinked folders are not followed. Returns what was removed."""
    folder = Path(folder)
    found: list[Path] = []
    level = [folder] if folder.is_dir() else []
    for _ in range(depth):
        below = []
        for d in level:
            try:
                entries = list(d.iterdir())
            except OSError:  # a subfolder we may not read holds nothing of ours
                continue
            for p in entries:
                if _is_leftover(p):
                    found.append(p)  # a temp folder goes whole
                elif p.is_dir() and not p.is_symlink():
                    below.append(p)
        level = below
    return _delete(found)


def _delete(paths: list[Path]) -> list[Path]:
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with suppress(OSError):  # another user's, in a shared folder: a leftover is not worth failing a command
                p.unlink(missing_ok=True)
    return paths


@contextmanager
def _registered(tmp: str | Path) -> Iterator[None]:
    _WRITING.add(str(tmp))
    try:
        yield
    finally:
        _WRITING.discard(str(tmp))


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp)` on a hidden temp file in the same folder, then rename it to `path`:
    readers see all or nothing. The temp name starts with '.' and ends '.tmp', which the folder
    reader ignores. A full or read-only disk is an OSError that says so and names the folder."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise in_words(e, path.parent) from None
    os.close(fd)
    with _registered(tmp):
        try:
            write(tmp)
            os.replace(tmp, path)
        except OSError as e:
            explained = in_words(e, path.parent, probe=True)
            Path(tmp).unlink(missing_ok=True)
            raise explained from None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a hidden temp folder beside `path` to write into; when the block ends it replaces `path`,
    and when the block fails it is removed. Readers see the old folder or the new one, never half of
    one: a non-empty folder cannot be renamed over, so the old one steps aside first, comes back if
    the rename fails, and is deleted only once the new one is in place. A full or read-only disk is an
    OSError that says so and names the folder."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(path)  # an earlier write of this path that a kill -9 cut short
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise in_words(e, path.parent) from None
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; what we write is for colleagues to read too
    with _registered(tmp):
        try:
            yield tmp
            _replace_dir(tmp, path)
        except OSError as e:
            explained = in_words(e, path.parent, probe=True)  # probed while the partial files still fill the disk
            shutil.rmtree(tmp, ignore_errors=True)
            raise explained from None
        except BaseException:
            # BaseException too: an interrupted run must not leave a temp folder behind either
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _replace_dir(tmp: Path, path: Path) -> None:
    if not path.exists():
        os.replace(tmp, path)
        return
    old = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".old", dir=path.parent))
    with _registered(old):
        os.replace(path, old / path.name)
        try:
            os.replace(tmp, path)
        except BaseException:
            os.replace(old / path.name, path)
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)


@contextmanager
def output_folder(folder: Path, depth: int = 2) -> Iterator[Path]:
    """Create `folder` (and missing parents) for a command's output, prove it writable (`check_writable`)
    and clear our leftovers in it (`remove_leftovers_in`); if the command then fails, remove the folders
    this call created while they are still empty, so a refused command leaves nothing behind."""
    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        check_writable(folder)
        remove_leftovers_in(folder, depth)
        yield folder
    except BaseException:
        for p in created:  # deepest first
            try:
                p.rmdir()
            except OSError:
                break  # not empty (something was written) or not ours to remove
        raise


class WordedError(OSError):
    """An OSError said in words that name the path: its str has no errno number or repr."""

    def __str__(self) -> str:
        return str(self.strerror)


_WRITE_FAILURES = {  # only a write fails so
    errno.ENOSPC: "the disk is full (no space left on the device); free some space or write elsewhere",
    errno.EDQUOT: "your disk quota is used up; free some space or write elsewhere",
    errno.EROFS: "the file system is read-only; choose a folder you can write to",
}
_DENIED = {  # a read fails so too: said as a write failure only where a write is known to have failed
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EPERM: "operation not permitted; choose a folder you can write to",
}


def in_words(e: OSError, where: str | Path | None = None, probe: bool = False) -> OSError:
    """`e` said in words, naming the path: with `where`, the folder a write into it failed (a full disk, a
    quota, a read-only file system, missing permissions); without, the file `e` names, a full or read-only
    disk as such and any other error as "PATH: reason" instead of "[Errno N] reason: 'PATH'". Some writers
    (numpy's) report a full disk only as "N requested and M written", with no errno: with `probe`, such an
    error is tested by writing to `where` once more, which does set one. Other errors come back unchanged."""
    if isinstance(e, WordedError):
        return e
    code = e.errno
    if code is None and probe and where is not None:
        code = _probe_errno(Path(where))
    words = _WRITE_FAILURES.get(code) or (_DENIED.get(code) if where is not None else None)
    named = where if where is not None else e.filename
    if words:
        return WordedError(code, f"{named}: cannot write there: {words}" if named is not None else words,
                           None if named is None else str(named))
    if where is None and e.filename is not None and e.strerror:
        return WordedError(code, f"{e.filename}: {e.strerror[:1].lower()}{e.strerror[1:]}", str(e.filename))
    return e


def _probe_errno(folder: Path) -> int | None:
    """The errno a 1 MiB write into `folder` fails with now, None when it succeeds."""
    try:
        _write_probe(folder, 1 << 20)
    except OSError as e:
        return e.errno
    return None


def _write_probe(folder: Path, size: int) -> None:
    """Write and sync `size` bytes in `folder`, to a file without a name (or one of ours): a kill
    leaves nothing, and a full disk answers with its errno."""
    with tempfile.TemporaryFile(dir=folder, prefix=_temp_prefix(folder / "probe"), suffix=".tmp") as f:
        f.write(b"\0" * size)
        f.flush()
        os.fsync(f.fileno())


def dataclass_from_dict(cls: type[T], d: dict[str, Any], what: str) -> T:
    """`cls(**d)`, refusing unknown keys by name: a typo in a config must not be ignored."""
    known = {f.name for f in fields(cls)}
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
    text = json.dumps({**sums, path.name: digest}, indent=1, sort_keys=True)

    def write(tmp: str) -> None:
        Path(tmp).write_text(text)
        Path(tmp).chmod(0o644)  # a temp file is owner-only; whoever may load the weights must read their sums

    atomic_write(book, write)  # a kill mid-write must not lose the sums already recorded
    return digest


def verified_sha256(path: Path, trust_unverified: bool = False) -> str:
    """`path`'s sha256, checked against the one its folder's checksums.json recorded when it was saved. A file
    with no recorded checksum is refused unless `trust_unverified`: otherwise deleting checksums.json would
    switch the check off, and flipped weight bytes would load without a word."""
    digest = file_sha256(path)
    book = path.parent / CHECKSUMS_NAME
    expected = None
    if book.is_file():
        try:
            sums = json.loads(book.read_text())
            expected = sums.get(path.name)
        except (ValueError, UnicodeDecodeError, AttributeError) as e:
            raise ChecksumError(f"{book}: unreadable ({e})") from None
    if expected is None and not trust_unverified:
        where = f"{book} does not list it" if book.is_file() else f"there is no {book}"
        raise ChecksumError(
            f"{path}: no checksum recorded ({where}), so damage or replacement cannot be detected. If you trust "
            "the file, record its checksum with `cosyn checksum <checkpoint folder>`, or pass --trust-unverified to "
            "load it as it is")
    if expected is not None and expected != digest:
        raise ChecksumError(f"{path}: sha256 {digest[:12]}… differs from the {str(expected)[:12]}… recorded in "
                            f"{CHECKSUMS_NAME} when it was saved: the file is damaged or was replaced")
    return digest


def check_writable(folder: Path) -> None:
    """Create `folder` if needed and prove data can be written in it, so that a long job learns of a
    read-only or full destination before it starts rather than after."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write_probe(folder, 1 << 12)
    except OSError as e:
        explained = in_words(e, folder)
        if isinstance(explained, WordedError):
            raise explained from None
        raise OSError(f"{folder}: cannot write there ({e.strerror or e})") from None
