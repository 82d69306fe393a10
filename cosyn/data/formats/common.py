"""Helpers every format module shares (package-internal): the lazy SampleSequence, array and
file checks that turn a malformed file into a DataError naming it, sample assembly, folder
lookups, the optional classes.json metadata and the .npy stacks.

Float arrays are accepted as instance/class maps only where float is the format's native
container and only when every value is a whole number: MATLAB's default double in .mat files,
and the .npy stacks of PanNuke (float64) and CoNIC. Elsewhere a float map means something resampled it, which
corrupts ids, so it is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np
import scipy.io as sio
import tifffile
from PIL import Image

from cosyn.core.classes import CONSEP, ClassSet
from cosyn.core.instances import instance_table
from cosyn.data.sample import DataError, Sample

_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_MAP_EXT = (".tif", ".tiff", ".png")
_INT32_MAX = int(np.iinfo(np.int32).max)


PathLike = str | Path


class SampleSequence(Sequence[Sample]):
    """The samples of one dataset, read from disk when indexed."""

    def __init__(self, names: list[str], load: Callable[[int], Sample]) -> None:
        self.names = names
        self._load = load

    def __len__(self) -> int:
        return len(self.names)

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> SampleSequence: ...

    def __getitem__(self, index: int | slice) -> Sample | SampleSequence:
        if isinstance(index, slice):
            picked = range(len(self.names))[index]
            return SampleSequence([self.names[i] for i in picked], lambda j: self._load(picked[j]))
        # range indexing gives negative indices and IndexError for free
        return self._load(range(len(self.names))[index])


# -- array checks -------------------------------------------------------------------------------


def _fail(path: PathLike, problem: str) -> DataError:
    return DataError(f"{path}: {problem}")


def _as_int_array(arr: np.ndarray, path: PathLike, what: str, allow_float: bool) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype.kind == "f" and allow_float:
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise _fail(path, f"{what} has non-integer values ({arr.dtype})")
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise _fail(path, f"{what} must hold integers, got dtype {arr.dtype}")
    return arr


def _check_ndim(arr: np.ndarray, ndim: int, path: PathLike, what: str) -> None:
    if arr.ndim != ndim:
        raise _fail(path, f"{what} must be {ndim}-D, got shape {arr.shape}")


def _instance_map(arr: np.ndarray, path: PathLike, allow_float: bool = False) -> np.ndarray:
    arr = _as_int_array(arr, path, "instance map", allow_float)
    _check_ndim(arr, 2, path, "instance map")
    if arr.size and (arr.min() < 0 or arr.max() > _INT32_MAX):
        raise _fail(path, f"instance ids must lie in 0..{_INT32_MAX}, got {arr.min()}..{arr.max()}")
    return arr.astype(np.int32, copy=False)


def _check_class_ids(ids: np.ndarray, classes: ClassSet, path: PathLike, what: str, hint: str = "") -> None:
    if ids.size and (ids.min() < 0 or ids.max() >= classes.num_classes):
        bad = ids.max() if ids.max() >= classes.num_classes else ids.min()
        raise _fail(
            path,
            f"{what} has class id {bad} outside the class set 0..{classes.num_classes - 1} "
            f"({', '.join(classes.names)}){hint}",
        )


def _class_map(
    arr: np.ndarray, path: PathLike, classes: ClassSet, allow_float: bool = False, hint: str = ""
) -> np.ndarray:
    arr = _as_int_array(arr, path, "class map", allow_float)
    _check_ndim(arr, 2, path, "class map")
    _check_class_ids(arr, classes, path, "class map", hint)
    return arr.astype(np.uint8)


def _image(arr: np.ndarray, path: PathLike, allow_float: bool = False) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise _fail(path, f"image must be (H, W, 3) RGB, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr
    if allow_float and arr.dtype.kind == "f":
        values = _as_int_array(arr, path, "image", allow_float=True)
        if values.size and (values.min() < 0 or values.max() > 255):
            raise _fail(path, f"image values must lie in 0..255, got {values.min()}..{values.max()}")
        return values.astype(np.uint8)
    raise _fail(path, f"image must be uint8, got dtype {arr.dtype}")


# -- file decoding ------------------------------------------------------------------------------
# Decoders raise a zoo of exception types on damaged files (OSError, SyntaxError, zlib/struct
# errors, ...); each is turned into a DataError that names the file.


def _read_raster(path: Path, rgb: bool = False) -> np.ndarray:
    """Pixels as stored, so 16- and 32-bit maps keep their ids; `rgb` flattens palette/alpha."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            arr = tifffile.imread(path)
            return arr[..., :3] if rgb and arr.ndim == 3 and arr.shape[2] == 4 else arr
        with Image.open(path) as im:
            im.load()
            if rgb and im.mode in ("P", "RGBA", "LA", "PA"):
                return np.asarray(im.convert("RGB"))
            return np.asarray(im)
    except Exception as e:
        raise _fail(path, f"cannot read image file ({type(e).__name__}: {e})") from None


def _load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except ValueError as e:
        if "pickle" in str(e) or "Python objects" in str(e):
            raise _fail(
                path, "holds Python objects and would need pickle to load; save it as a numeric or string array"
            ) from None
        raise _fail(path, f"cannot read .npy file ({e})") from None
    except Exception as e:
        raise _fail(path, f"cannot read .npy file ({type(e).__name__}: {e})") from None


def _load_mat(path: Path, required: tuple[str, ...]) -> dict[str, Any]:
    try:
        mat = sio.loadmat(path)
    except NotImplementedError:
        raise _fail(path, "MATLAB v7.3 (HDF5) files are not supported; save it as v5 (-v7 or older)") from None
    except Exception as e:
        raise _fail(path, f"cannot read .mat file ({type(e).__name__}: {e})") from None
    missing = [k for k in required if k not in mat]
    if missing:
        raise _fail(path, f"missing key(s) {', '.join(missing)}")
    return mat


def _save_png(path: Path, arr: np.ndarray) -> None:
    Image.fromarray(arr).save(path, compress_level=1)


# -- sample assembly ----------------------------------------------------------------------------


def _build_sample(
    name: str,
    files: tuple[PathLike, PathLike, PathLike],
    image: np.ndarray,
    inst_map: np.ndarray,
    class_map: np.ndarray,
    classes: ClassSet,
    listed: tuple[Path, np.ndarray, np.ndarray] | None = None,
    **meta: Any,
) -> Sample:
    """A Sample whose per-instance table comes from the maps, or from `listed` = (file,
    inst_type, inst_centroid) when the format stores one (rows in ascending id order)."""
    if image.shape[:2] != inst_map.shape or class_map.shape != inst_map.shape:
        raise _fail(
            files[0],
            f"sizes differ: image {image.shape[:2]}, instance map {Path(files[1]).name} {inst_map.shape}, "
            f"class map {Path(files[2]).name} {class_map.shape}",
        )
    ids, centroids, inst_classes = instance_table(inst_map, class_map)
    if listed is not None:
        centroids, inst_classes = _listed_instances(*listed, n_ids=len(ids), classes=classes)
    return Sample(name, image, inst_map, class_map, ids, centroids, inst_classes, classes, **meta)


def _listed_instances(
    path: Path, inst_type: np.ndarray, inst_centroid: np.ndarray, n_ids: int, classes: ClassSet
) -> tuple[np.ndarray, np.ndarray]:
    types = _as_int_array(inst_type, path, "inst_type", allow_float=True).reshape(-1)
    cents = np.asarray(inst_centroid)
    if cents.dtype.kind not in "iuf" or cents.size % 2:
        raise _fail(path, f"inst_centroid must be numeric (N, 2), got {cents.dtype} {cents.shape}")
    cents = cents.astype(np.float64).reshape(-1, 2)
    if len(types) != n_ids or len(cents) != n_ids:
        raise _fail(
            path,
            f"lists {len(types)} instance types and {len(cents)} centroids "
            f"but the instance map has {n_ids} instances",
        )
    _check_class_ids(types, classes, path, "inst_type")
    return cents, types.astype(np.int32)


def _sequence(root: Path, names: list[str], load: Callable[[int], Sample]) -> SampleSequence:
    if not names:
        raise _fail(root, "no samples found")
    return SampleSequence(names, load)


# -- folder helpers -----------------------------------------------------------------------------


def _child(parent: Path, name: str) -> Path | None:
    """The sub-folder `name`, matched case-insensitively (HoVer-Net writes Images/, others images/)."""
    exact = parent / name
    if exact.is_dir():
        return exact
    if not parent.is_dir():
        return None
    return next((d for d in sorted(parent.iterdir()) if d.is_dir() and d.name.lower() == name.lower()), None)


def _require_child(parent: Path, name: str) -> Path:
    found = _child(parent, name)
    if found is None:
        raise _fail(parent, f"missing folder {name}/")
    return found


def _subdirs(parent: Path) -> list[Path]:
    return sorted(d for d in parent.iterdir() if d.is_dir() and not d.name.startswith("."))


def _split_roots(root: Path, split: str | None, marker: str) -> list[Path]:
    """Dataset roots to read: `root/split`, else `root` if it holds `marker`, else every split
    sub-folder that does (e.g. HoVer-Net's CoNSeP/Train and CoNSeP/Test)."""
    if split:
        return [_require_child(root, split)]
    if _child(root, marker):
        return [root]
    roots = [d for d in _subdirs(root) if _child(d, marker)]
    if not roots:
        raise _fail(root, f"no {marker}/ folder here or in its sub-folders")
    return roots


def _list_files(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """stem -> file for the files of `folder` with one of `suffixes`; other files are ignored."""
    found: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in suffixes:
            if f.stem in found:
                raise _fail(f, f"two files share the name {f.stem} ({found[f.stem].name})")
            found[f.stem] = f
    return found


def _match_partners(
    image_dir: Path, partners: list[tuple[Path, tuple[str, ...]]]
) -> list[tuple[Path, ...]]:
    """(image, partner, ...) per image stem; a missing partner or an orphan partner is an error."""
    images = _list_files(image_dir, _IMAGE_EXT)
    found = [_list_files(folder, suffixes) for folder, suffixes in partners]
    for files in found:
        for stem, f in files.items():
            if stem not in images:
                raise _fail(f, f"no image named {stem} in {image_dir}")
    rows = []
    for stem, image in images.items():
        row = [image]
        for (folder, suffixes), files in zip(partners, found, strict=True):
            if stem not in files:
                names = suffixes[0] if len(suffixes) == 1 else f"{{{','.join(suffixes)}}}"
                raise _fail(image, f"missing partner file {folder / stem}{names}")
            row.append(files[stem])
        rows.append(tuple(row))
    return rows


def _npy_candidates(root: Path, name: str) -> list[Path]:
    """`name` in root or up to two levels below, from the shallowest level that has it."""
    for pattern in (name, f"*/{name}", f"*/*/{name}"):
        hits = sorted(p for p in root.glob(pattern) if p.is_file())
        if hits:
            return hits
    return []


def _find_npy(root: Path, name: str) -> Path:
    hits = _npy_candidates(root, name)
    if not hits:
        raise _fail(root, f"no {name} here or up to two levels below")
    if len(hits) > 1:
        raise _fail(root, f"several {name} found ({', '.join(map(str, hits))}); pass one fold as split")
    return hits[0]


def _split_root(root: Path, split: str | None) -> Path:
    return _require_child(root, split) if split else root


def _prefix(folder: Path) -> str:
    """A source prefix from a folder name: 'Fold 1' -> 'fold1'."""
    return re.sub(r"\W+", "", folder.name.lower()) or "data"


def _tissue_name(raw: str) -> str | None:
    """PanNuke's 'Adrenal_gland', 'Bile-duct', 'HeadNeck' -> TISSUES' 'adrenal gland', ..."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", raw.strip())
    name = " ".join(re.split(r"[\s_\-]+", spaced)).lower().strip()
    return name or None


# -- dataset metadata (classes.json) ------------------------------------------------------------


@dataclass
class _Meta:
    """What `classes.json` holds; also collects it while a writer streams samples."""

    classes: ClassSet | None = None
    mpp: float | None = None
    tissue: str | None = None
    sources: dict[str, str] = field(default_factory=dict)
    tissues: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> _Meta:
        try:
            raw = json.loads(path.read_text())
            meta = cls(
                classes=ClassSet(tuple(raw["classes"])),
                mpp=None if raw.get("mpp") is None else float(raw["mpp"]),
                tissue=raw.get("tissue"),
                sources={str(k): str(v) for k, v in raw.get("sources", {}).items()},
                tissues=dict(raw.get("tissues", {})),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise _fail(path, f"bad classes.json ({type(e).__name__}: {e})") from None
        return meta

    def for_stem(self, stem: str) -> dict[str, Any]:
        return {"tissue": self.tissues.get(stem, self.tissue), "mpp": self.mpp, "source": self.sources.get(stem, stem)}

    def add(self, s: Sample) -> None:
        if not s.name or Path(s.name).name != s.name:
            raise DataError(f"{s.name!r}: a sample name must be a plain file stem")
        if s.name in self.sources:
            raise DataError(f"{s.name}: two samples share this name")
        if self.classes is None:
            self.classes, self.mpp = s.classes, s.mpp
        elif s.classes != self.classes:
            raise DataError(f"{s.name}: class set {s.classes.to_list()} differs from {self.classes.to_list()}")
        elif s.mpp != self.mpp:
            raise DataError(f"{s.name}: mpp {s.mpp} differs from {self.mpp}")
        self.sources[s.name] = s.source or s.name
        self.tissues[s.name] = s.tissue

    def save(self, folder: Path) -> None:
        if self.classes is None:
            raise _fail(folder, "no samples to write")
        tissues = set(self.tissues.values())
        raw: dict[str, Any] = {
            "classes": self.classes.to_list(),
            "tissue": next(iter(tissues)) if len(tissues) == 1 else None,
            "mpp": self.mpp,
            "sources": self.sources,
        }
        if len(tissues) > 1:
            raw["tissues"] = self.tissues
        (folder / "classes.json").write_text(json.dumps(raw, indent=1))


def _meta_near(base: Path, root: Path) -> _Meta:
    """classes.json of the split folder, else of the dataset root, else the CoNSeP default."""
    for folder in (base, root):
        if (folder / "classes.json").is_file():
            return _Meta.load(folder / "classes.json")
    return _Meta(classes=CONSEP)


def _require_classes(samples: Iterable[Sample], classes: ClassSet, fmt: str) -> Iterator[Sample]:
    for s in samples:
        if s.classes != classes:
            raise DataError(f"{s.name}: the {fmt} format holds only the classes {classes.to_list()}")
        yield s


# -- .npy stacks (pannuke, conic) ----------------------------------------------------------


def _check_stack(path: Path, arr: np.ndarray, channels: int) -> None:
    if arr.ndim != 4 or arr.shape[3] != channels:
        raise _fail(path, f"must be an (N, H, W, {channels}) array, got shape {arr.shape}")


def _check_same_stack(path: Path, arr: np.ndarray, ref_path: Path, ref: np.ndarray) -> None:
    if arr.shape[:3] != ref.shape[:3]:
        raise _fail(path, f"shape {arr.shape} does not match {ref_path.name} {ref.shape}")


def _image_and_label_stacks(
    base: Path, labels_name: str, label_channels: int
) -> tuple[Path, np.ndarray, Path, np.ndarray]:
    """`images.npy` and its partner stack, memory-mapped and checked against each other."""
    images_file, labels_file = _find_npy(base, "images.npy"), _find_npy(base, labels_name)
    images, labels = _load_npy(images_file, mmap=True), _load_npy(labels_file, mmap=True)
    _check_stack(images_file, images, 3)
    _check_stack(labels_file, labels, label_channels)
    _check_same_stack(labels_file, labels, images_file, images)
    return images_file, images, labels_file, labels


def _stack(samples: Iterable[Sample], root: Path) -> list[Sample]:
    listed = list(samples)
    if not listed:
        raise _fail(root, "no samples to write")
    sizes = {s.image.shape for s in listed}
    if len(sizes) > 1:
        raise _fail(root, f"array formats need one image size, got {sorted(sizes)}")
    return listed
