"""Server-side paths a browser may name, and uploads it may send: confined and size-limited.

A studio bound to more than localhost must not become a file browser for the whole disk, so
every path typed into the UI is resolved (symlinks followed) and must land inside one of the
configured roots. Uploaded zips are unpacked member by member with the same rule.
"""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath


class PathError(ValueError):
    """A path or upload the studio refuses; the message says why and what is allowed."""


_SIMPLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _roots_text(roots: Sequence[Path]) -> str:
    return ", ".join(str(r) for r in roots)


def confine(path: str | Path, roots: Sequence[Path], what: str = "path") -> Path:
    """`path` resolved, provided it lies inside one of `roots`.

    A relative path is looked up under each root in turn (the first that exists wins). `..`
    is refused outright, even where it would resolve inside a root: it is the shape of an
    escape, and a clear refusal beats a surprising resolution.
    """
    if not roots:
        raise PathError(f"{what}: no data roots are configured; start the studio with --data-root DIR")
    raw = str(path).strip()
    if not raw or "\x00" in raw:
        raise PathError(f"{what}: give a folder inside {_roots_text(roots)}")
    p = Path(raw).expanduser()
    if ".." in p.parts:
        raise PathError(f"{what} {raw!r}: '..' is not allowed; give a path inside {_roots_text(roots)}")
    resolved_roots = [r.resolve() for r in roots]
    if p.is_absolute():
        candidate = p
    else:
        existing = [r / p for r in resolved_roots if (r / p).exists() or (r / p).is_symlink()]
        candidate = existing[0] if existing else resolved_roots[0] / p
    target = candidate.resolve()
    if any(target.is_relative_to(r) for r in resolved_roots):
        return target
    if any(candidate.absolute().is_relative_to(r) for r in resolved_roots):
        raise PathError(f"{what} {raw!r} leads outside the data roots through a symbolic link; "
                        f"allowed: {_roots_text(roots)}")
    raise PathError(f"{what} {raw!r} lies outside the allowed data roots ({_roots_text(roots)})")


def check_name(name: str, what: str = "name") -> str:
    """A single folder name (letters, digits, . _ -), so it can never point elsewhere."""
    name = str(name).strip()
    if not _SIMPLE_NAME.match(name) or name in (".", ".."):
        raise PathError(f"{what} {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter "
                        "or digit")
    return name


def check_upload(path: str | Path, max_bytes: int) -> Path:
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise PathError(f"{path.name}: {size / 2**20:.1f} MB is over the upload limit of {max_bytes / 2**20:.0f} MB")
    return path


def extract_zip(zip_path: str | Path, dest: Path, max_bytes: int) -> Path:
    """Unpack an uploaded zip into the new folder `dest`; returns the dataset folder inside it.

    Refused: members with absolute paths or `..` (zip-slip), symbolic links, and archives
    whose unpacked size exceeds `max_bytes` (a zip bomb is small until it is unpacked).
    A zip holding one top folder gives that folder, so zipping a dataset folder just works.
    """
    zip_path = Path(zip_path)
    try:
        zf = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile:
        raise PathError(f"{zip_path.name}: not a zip file") from None
    with zf:
        members = zf.infolist()
        total = sum(m.file_size for m in members)
        if total > max_bytes:
            raise PathError(f"{zip_path.name}: unpacks to {total / 2**20:.1f} MB, over the limit of "
                            f"{max_bytes / 2**20:.0f} MB")
        for m in members:
            name = PurePosixPath(m.filename.replace("\\", "/"))
            if name.is_absolute() or ".." in name.parts:
                raise PathError(f"{zip_path.name}: member {m.filename!r} would unpack outside its folder")
            if stat.S_ISLNK(m.external_attr >> 16):
                raise PathError(f"{zip_path.name}: member {m.filename!r} is a symbolic link; links are not accepted")
        if dest.exists():
            raise PathError(f"{dest}: already exists")
        dest.mkdir(parents=True)
        try:
            zf.extractall(dest)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    entries = [e for e in dest.iterdir() if not e.name.startswith((".", "__MACOSX"))]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest
