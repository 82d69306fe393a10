"""The formats by name: reading and writing a dataset in any of them, and telling which one a folder holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from cosyn.data.formats.common import PathLike, SampleSequence, _child, _fail, _npy_candidates, _subdirs
from cosyn.data.formats.conic import read_conic, write_conic
from cosyn.data.formats.consep import read_consep, write_consep
from cosyn.data.formats.folder import read_folder, write_folder
from cosyn.data.formats.hovernet import read_hovernet, write_hovernet
from cosyn.data.formats.pannuke import read_pannuke, write_pannuke
from cosyn.data.sample import DataError, Sample

FORMATS = ("consep", "hovernet", "pannuke", "conic", "folder")

READERS: dict[str, Callable[..., SampleSequence]] = {
    "consep": read_consep,
    "hovernet": read_hovernet,
    "pannuke": read_pannuke,
    "conic": read_conic,
    "folder": read_folder,
}
WRITERS: dict[str, Callable[..., None]] = {
    "consep": write_consep,
    "hovernet": write_hovernet,
    "pannuke": write_pannuke,
    "conic": write_conic,
    "folder": write_folder,
}


def _has_dirs(*names: str) -> Callable[[Path], bool]:
    def check(folder: Path) -> bool:
        return all(_child(folder, n) for n in names)

    return check


# Most specific first: consep and folder both have images/, hovernet only Images/ + Labels/.
_SIGNATURES: list[tuple[str, str, Callable[[Path], bool]]] = [
    ("consep", "images/, inst/, type_mat/", _has_dirs("images", "inst", "type_mat")),
    ("folder", "images/, instances/, classes/", _has_dirs("images", "instances", "classes")),
    ("hovernet", "Images/, Labels/", _has_dirs("Images", "Labels")),
    ("pannuke", "images.npy + masks.npy", lambda d: bool(_npy_candidates(d, "masks.npy"))),
    ("conic", "images.npy + labels.npy", lambda d: bool(_npy_candidates(d, "labels.npy"))),
]


def detect_format(path: PathLike) -> str:
    """The format of the dataset at `path` (its folder or one split sub-folder is checked)."""
    root = Path(path)
    if not root.is_dir():
        raise _fail(root, "not a folder")
    candidates = [root, *_subdirs(root)]
    for fmt, _, looks_like in _SIGNATURES:
        if any(looks_like(d) for d in candidates):
            return fmt
    looked_for = "; ".join(f"{fmt} ({what})" for fmt, what, _ in _SIGNATURES)
    raise _fail(root, f"cannot tell the dataset format; looked for {looked_for}")


def read_dataset(path: PathLike, fmt: str = "auto", split: str | None = None) -> SampleSequence:
    """All samples of the dataset at `path`; `split` picks a split sub-folder (default: all)."""
    path = Path(path)
    if not path.is_dir():
        raise _fail(path, "not a folder")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt not in READERS:
        raise DataError(f"unknown format {fmt!r}; choose one of auto, {', '.join(FORMATS)}")
    return READERS[fmt](path, split)


def write_dataset(samples: Iterable[Sample], path: PathLike, fmt: str) -> None:
    if fmt not in WRITERS:
        raise DataError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    WRITERS[fmt](samples, Path(path))
