"""Refusals made before anything is deleted: an output that would swallow or sit inside its input.

`--overwrite` replaces the output folder whole, so an output that is the input, holds it, or lies
inside it would destroy the input (issue 23: `prepare raw --out <parent of raw> --overwrite`
deleted the dataset). Every command that writes an output from an input checks here first.
"""

from __future__ import annotations

import os
from pathlib import Path


class OverlapError(ValueError):
    """An output path that is, contains, or lies inside the input it is made from."""


def refuse_overlap(source: str | os.PathLike[str], out: str | os.PathLike[str], what: str) -> None:
    """Raise OverlapError when `out` equals, contains or lies inside `source`. `what` names the option
    the user should change (e.g. "--out"). Symlinks are resolved; a path that does not exist yet counts
    by its resolved parent chain, so a link anywhere above it is followed too."""
    src, dst = Path(os.path.realpath(source)), Path(os.path.realpath(out))
    if dst == src or _same_existing(src, dst):
        relation = "is the input"
    elif src in dst.parents:
        relation = "lies inside the input"
    elif dst in src.parents:
        relation = "contains the input"
    else:
        return
    raise OverlapError(f"{what} {out} {relation} {source}; writing (or --overwrite replacing) it would destroy "
                       f"the input. Choose a {what} outside {source}, and not above it")


def _same_existing(a: Path, b: Path) -> bool:
    """Two spellings of one existing folder (a bind mount or a hard-linked file) that realpath keeps apart."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False
