"""Dataset readers and writers, one pair per on-disk format; format detection; validation report.

Every reader returns a lazy `SampleSequence`: building it only lists files and reads .npy
headers, so layout problems (missing partner files, stacks of the wrong shape) surface at once,
while pixels are read when a sample is indexed. Every writer takes any iterable of `Sample`s.

Formats:
- consep: `images/<split>/*.jpg|png`, `inst/<split>/*.npy`, `type_mat/<split>/*.mat`
  (`inst_type`, `inst_centroid`), `seg_mask/<split>/*.png`. CoNSeP's 4 merged classes, 0.25 mpp,
  colon. Instance ids are the whole tile's ids and are kept. A patch `train_12_007` has source
  `train_12`. The writer stores images as PNG, because JPEG would not round-trip.
- hovernet: `Images/*.png` + `Labels/*.mat` (`inst_map`, `type_map`, `inst_type`,
  `inst_centroid`). Source = file stem. Class set, tissue and mpp come from an optional
  `classes.json` (as in `folder`); without it the class set is CoNSeP's merged 4 classes.
- pannuke: `images.npy` (N, H, W, 3), `masks.npy` (N, H, W, 6) with instance ids per channel
  (neoplastic, inflammatory, connective, dead, epithelial, background), optional `types.npy`
  beside `images.npy` (tissue per image; PanNuke's names are normalised to `TISSUES`). The files
  may sit in the folder or up to two levels below (PanNuke's own `images/fold1/images.npy`
  layout). Ids of different channels collide, so instances are relabelled 1..N in channel order,
  then by ascending original id; where channels overlap the later channel wins; the background
  channel is ignored. PanNuke has no tile ids, so each image is its own source
  (`<folder>_<index:05d>`, e.g. `fold1_00042` for "Fold 1"): a validation split over PanNuke is
  per image.
- conic: `images.npy` (N, H, W, 3) + `labels.npy` (N, H, W, 2) = (instance, class), CoNIC classes,
  0.5 mpp, colon. Each image is its own source (`<folder>_<index:05d>`), so a validation split is
  per image; `patch_info.csv` (the Lizard image of each patch) is not read.
- folder: `images/`, `instances/`, `classes/` with the same stems, PNG or TIFF (images may also be
  JPEG), plus an optional `classes.json`: {"classes": [...], "tissue": ..., "mpp": ...,
  "sources": {stem: source}, "tissues": {stem: tissue}}; "tissues" is only written when tissue
  varies per image. This is the normalised format `prepare` writes: PNG images, int32 zlib TIFF
  instance maps, uint8 PNG class maps.

Float arrays are accepted as instance/class maps only where float is the format's native
container and only when every value is a whole number: MATLAB's default double in .mat files,
and the .npy stacks of PanNuke (float64) and CoNIC. Elsewhere a float map means something resampled it, which
corrupts ids, so it is refused.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np
import scipy.io as sio
import tifffile
from PIL import Image

from cosyn.core.classes import CONIC, CONSEP, PANNUKE, ClassSet
from cosyn.data.sample import DataError, Sample, instance_table

FORMATS = ("consep", "hovernet", "pannuke", "conic", "folder")

CONSEP_MPP = 0.25
PANNUKE_MPP = 0.25  # PanNuke is scanned at 40x
CONIC_MPP = 0.5  # Lizard/CoNIC is 20x

_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_MAP_EXT = (".tif", ".tiff", ".png")
_INT32_MAX = int(np.iinfo(np.int32).max)
_CENTROID_TOLERANCE_PX = 0.5
_EXAMPLES = 3  # ids quoted per problem line

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


# -- consep -------------------------------------------------------------------------------------


def read_consep(root: PathLike, split: str | None = None) -> SampleSequence:
    root = Path(root)
    image_root = _require_child(root, "images")
    splits = [split] if split else [d.name for d in _subdirs(image_root)]
    rows = []
    for s in splits:
        rows += _match_partners(
            _require_child(image_root, s),
            [
                (_require_child(root / "inst", s), (".npy",)),
                (_require_child(root / "type_mat", s), (".mat",)),
                (_require_child(root / "seg_mask", s), (".png",)),
            ],
        )
    return _sequence(root, [r[0].stem for r in rows], lambda i: _load_consep(*rows[i]))


def _load_consep(image_file: Path, inst_file: Path, mat_file: Path, seg_file: Path) -> Sample:
    mat = _load_mat(mat_file, ("inst_type", "inst_centroid"))
    stem = image_file.stem
    return _build_sample(
        stem,
        (image_file, inst_file, seg_file),
        _image(_read_raster(image_file, rgb=True), image_file),
        _instance_map(_load_npy(inst_file), inst_file),
        _class_map(_read_raster(seg_file), seg_file, CONSEP),
        CONSEP,
        listed=(mat_file, mat["inst_type"], mat["inst_centroid"]),
        tissue="colon",
        mpp=CONSEP_MPP,
        source=re.sub(r"_\d+$", "", stem),
    )


def write_consep(samples: Iterable[Sample], root: PathLike, split: str = "train") -> None:
    root = Path(root)
    dirs = {k: root / k / split for k in ("images", "inst", "type_mat", "seg_mask")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for s in _require_classes(samples, CONSEP, "consep"):
        _save_png(dirs["images"] / f"{s.name}.png", s.image)
        np.save(dirs["inst"] / f"{s.name}.npy", s.inst_map.astype(np.int32))
        sio.savemat(
            dirs["type_mat"] / f"{s.name}.mat",
            {"inst_type": s.inst_classes.reshape(-1, 1).astype(np.int64), "inst_centroid": s.centroids},
        )
        _save_png(dirs["seg_mask"] / f"{s.name}.png", s.class_map.astype(np.uint8))


# -- hovernet -----------------------------------------------------------------------------------

_HOVERNET_HINT = (
    "; original 7-class CoNSeP labels must be merged (3,4 -> 3; 5,6,7 -> 4) "
    "or the class list given in classes.json"
)


def read_hovernet(root: PathLike, split: str | None = None) -> SampleSequence:
    root = Path(root)
    rows: list[tuple[Path, Path, _Meta]] = []
    for base in _split_roots(root, split, "Images"):
        meta = _meta_near(base, root)
        pairs = _match_partners(_require_child(base, "Images"), [(_require_child(base, "Labels"), (".mat",))])
        rows += [(image, label, meta) for image, label in pairs]
    return _sequence(root, [r[0].stem for r in rows], lambda i: _load_hovernet(*rows[i]))


def _load_hovernet(image_file: Path, mat_file: Path, meta: _Meta) -> Sample:
    assert meta.classes is not None
    mat = _load_mat(mat_file, ("inst_map", "type_map", "inst_type", "inst_centroid"))
    return _build_sample(
        image_file.stem,
        (image_file, mat_file, mat_file),
        _image(_read_raster(image_file, rgb=True), image_file),
        _instance_map(mat["inst_map"], mat_file, allow_float=True),
        _class_map(mat["type_map"], mat_file, meta.classes, allow_float=True, hint=_HOVERNET_HINT),
        meta.classes,
        listed=(mat_file, mat["inst_type"], mat["inst_centroid"]),
        **meta.for_stem(image_file.stem),
    )


def write_hovernet(samples: Iterable[Sample], root: PathLike) -> None:
    root = Path(root)
    (root / "Images").mkdir(parents=True, exist_ok=True)
    (root / "Labels").mkdir(parents=True, exist_ok=True)
    meta = _Meta()
    for s in samples:
        meta.add(s)
        _save_png(root / "Images" / f"{s.name}.png", s.image)
        sio.savemat(
            root / "Labels" / f"{s.name}.mat",
            {
                "inst_map": s.inst_map.astype(np.int32),
                "type_map": s.class_map.astype(np.int32),
                "inst_type": s.inst_classes.reshape(-1, 1).astype(np.int32),
                "inst_centroid": s.centroids.reshape(-1, 2),
            },
            do_compression=True,
        )
    meta.save(root)


# -- pannuke ------------------------------------------------------------------------------------


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


def read_pannuke(root: PathLike, split: str | None = None) -> SampleSequence:
    base = _split_root(Path(root), split)
    images_file, images, masks_file, masks = _image_and_label_stacks(base, "masks.npy", 6)
    types_file = images_file.parent / "types.npy"
    tissues: list[str | None] = [None] * len(images)
    if types_file.is_file():
        types = _load_npy(types_file)
        if types.shape != (len(images),) or types.dtype.kind not in "US":
            raise _fail(types_file, f"must be {len(images)} tissue names, got {types.dtype} {types.shape}")
        tissues = [_tissue_name(t.decode() if isinstance(t, bytes) else str(t)) for t in types]
    prefix = _prefix(base)
    names = [f"{prefix}_{i:05d}" for i in range(len(images))]

    def load(i: int) -> Sample:
        where = (f"{images_file}[{i}]", f"{masks_file}[{i}]", f"{masks_file}[{i}]")
        inst_map, class_map = _merge_pannuke_channels(
            _as_int_array(masks[i], where[1], "mask", allow_float=True)
        )
        image = _image(images[i], where[0], allow_float=True)
        return _build_sample(
            names[i], where, image, inst_map, class_map, PANNUKE,
            tissue=tissues[i], mpp=PANNUKE_MPP, source=names[i],
        )

    return _sequence(base, names, load)


def _merge_pannuke_channels(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One (H, W, 6) PanNuke mask -> (instance map, class map); see the module doc on relabelling."""
    inst_map = np.zeros(mask.shape[:2], np.int32)
    class_map = np.zeros(mask.shape[:2], np.uint8)
    next_id = 1
    for channel in range(PANNUKE.num_classes - 1):
        ch = mask[..., channel]
        fg = ch != 0
        ids = np.unique(ch[fg])
        inst_map[fg] = next_id + np.searchsorted(ids, ch[fg])
        class_map[fg] = channel + 1
        next_id += len(ids)
    return inst_map, class_map


def _pannuke_masks(s: Sample) -> np.ndarray:
    """Instances split into PanNuke's class channels by their per-instance class."""
    masks = np.zeros((*s.inst_map.shape, 6), np.int32)
    pixel_class = np.zeros(s.inst_map.shape, np.int32)
    fg = s.inst_map != 0
    pixel_class[fg] = s.inst_classes[np.searchsorted(s.inst_ids, s.inst_map[fg])]
    for channel in range(5):
        masks[..., channel] = np.where(pixel_class == channel + 1, s.inst_map, 0)
    masks[..., 5] = ~fg
    return masks


def _stack(samples: Iterable[Sample], root: Path) -> list[Sample]:
    listed = list(samples)
    if not listed:
        raise _fail(root, "no samples to write")
    sizes = {s.image.shape for s in listed}
    if len(sizes) > 1:
        raise _fail(root, f"array formats need one image size, got {sorted(sizes)}")
    return listed


def write_pannuke(samples: Iterable[Sample], root: PathLike) -> None:
    root = Path(root)
    listed = _stack(_require_classes(samples, PANNUKE, "pannuke"), root)
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "images.npy", np.stack([s.image for s in listed]))
    np.save(root / "masks.npy", np.stack([_pannuke_masks(s) for s in listed]))
    np.save(root / "types.npy", np.array([s.tissue or "" for s in listed]))


# -- conic --------------------------------------------------------------------------------------


def read_conic(root: PathLike, split: str | None = None) -> SampleSequence:
    base = _split_root(Path(root), split)
    images_file, images, labels_file, labels = _image_and_label_stacks(base, "labels.npy", 2)
    prefix = _prefix(base)
    names = [f"{prefix}_{i:05d}" for i in range(len(images))]

    def load(i: int) -> Sample:
        where = (f"{images_file}[{i}]", f"{labels_file}[{i}]", f"{labels_file}[{i}]")
        label = np.asarray(labels[i])
        return _build_sample(
            names[i],
            where,
            _image(images[i], where[0], allow_float=True),
            _instance_map(label[..., 0], where[1], allow_float=True),
            _class_map(label[..., 1], where[2], CONIC, allow_float=True),
            CONIC,
            tissue="colon",
            mpp=CONIC_MPP,
            source=names[i],
        )

    return _sequence(base, names, load)


def write_conic(samples: Iterable[Sample], root: PathLike) -> None:
    root = Path(root)
    listed = _stack(_require_classes(samples, CONIC, "conic"), root)
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "images.npy", np.stack([s.image for s in listed]))
    labels = [np.stack([s.inst_map.astype(np.int32), s.class_map.astype(np.int32)], axis=-1) for s in listed]
    np.save(root / "labels.npy", np.stack(labels))


# -- folder -------------------------------------------------------------------------------------


def read_folder(root: PathLike, split: str | None = None) -> SampleSequence:
    root = Path(root)
    rows: list[tuple[Path, Path, Path, _Meta]] = []
    for base in _split_roots(root, split, "images"):
        meta = _meta_near(base, root)
        triples = _match_partners(
            _require_child(base, "images"),
            [(_require_child(base, "instances"), _MAP_EXT), (_require_child(base, "classes"), _MAP_EXT)],
        )
        rows += [(*t, meta) for t in triples]
    return _sequence(root, [r[0].stem for r in rows], lambda i: _load_folder(*rows[i]))


def _load_folder(image_file: Path, inst_file: Path, class_file: Path, meta: _Meta) -> Sample:
    assert meta.classes is not None
    return _build_sample(
        image_file.stem,
        (image_file, inst_file, class_file),
        _image(_read_raster(image_file, rgb=True), image_file),
        _instance_map(_read_raster(inst_file), inst_file),
        _class_map(_read_raster(class_file), class_file, meta.classes),
        meta.classes,
        **meta.for_stem(image_file.stem),
    )


def write_folder(samples: Iterable[Sample], root: PathLike) -> None:
    """The normalised layout: PNG images, int32 zlib TIFF instance maps, uint8 PNG class maps."""
    root = Path(root)
    dirs = {k: root / k for k in ("images", "instances", "classes")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    meta = _Meta()
    for s in samples:
        meta.add(s)
        _save_png(dirs["images"] / f"{s.name}.png", s.image)
        tifffile.imwrite(dirs["instances"] / f"{s.name}.tif", s.inst_map.astype(np.int32), compression="zlib")
        _save_png(dirs["classes"] / f"{s.name}.png", s.class_map.astype(np.uint8))
    meta.save(root)


# -- dispatch -----------------------------------------------------------------------------------

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


# -- validation ---------------------------------------------------------------------------------


@dataclass
class Report:
    """Dataset statistics and the problems found, renderable as JSON and Markdown.

    `sizes` counts images per "WIDTHxHEIGHT"; `class_histogram` counts instances per class id.
    """

    n_samples: int
    n_sources: int
    sizes: dict[str, int]
    n_instances: int
    instances_mean: float
    instances_max: int
    class_histogram: dict[int, int]
    classes: list[str]
    empty_tiles: list[str]
    problems: list[str]
    dataset: str = ""
    fmt: str = ""

    def class_name(self, class_id: int) -> str:
        return self.classes[class_id] if 0 <= class_id < len(self.classes) else str(class_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "format": self.fmt,
            "samples": self.n_samples,
            "sources": self.n_sources,
            "sizes": self.sizes,
            "instances": {"total": self.n_instances, "per_tile_mean": self.instances_mean,
                          "per_tile_max": self.instances_max},
            "classes": self.classes,
            "class_histogram": [
                {"id": k, "name": self.class_name(k), "instances": v} for k, v in sorted(self.class_histogram.items())
            ],
            "empty_tiles": self.empty_tiles,
            "problems": self.problems,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def to_markdown(self) -> str:
        lines = ["# Dataset report", ""]
        if self.dataset:
            lines.append(f"- dataset: `{self.dataset}` (format {self.fmt or '?'})")
        lines += [
            f"- samples: {self.n_samples} from {self.n_sources} sources",
            f"- image sizes: {', '.join(f'{k} ({v})' for k, v in sorted(self.sizes.items()))}",
            f"- instances: {self.n_instances} in total, per tile mean {self.instances_mean:.1f}, "
            f"max {self.instances_max}",
            f"- empty tiles: {len(self.empty_tiles)}" + "".join(f"\n  - {n}" for n in self.empty_tiles),
            "",
            "## Instances per class",
            "",
            "| id | class | instances |",
            "| --- | --- | --- |",
        ]
        lines += [f"| {k} | {self.class_name(k)} | {v} |" for k, v in sorted(self.class_histogram.items())]
        lines += ["", f"## Problems ({len(self.problems)})", ""]
        lines += [f"- {p}" for p in self.problems] or ["None found."]
        return "\n".join(lines) + "\n"


def _examples(parts: list[str]) -> str:
    return ", ".join(parts[:_EXAMPLES]) + (", ..." if len(parts) > _EXAMPLES else "")


def _sample_problems(s: Sample) -> list[str]:
    """Soft inconsistencies a reader lets through: stored per-instance data that disagrees with
    the maps. Hard errors (shapes, dtypes, class ids) never get this far."""
    ids, means, majority = instance_table(s.inst_map, s.class_map)
    if not np.array_equal(ids, s.inst_ids) or len(s.centroids) != len(ids) or len(s.inst_classes) != len(ids):
        return ["inst_ids, centroids or inst_classes do not match the instance map's ids"]
    problems = []
    off = np.abs(np.asarray(s.centroids) - means).max(axis=1) if len(ids) else np.zeros(0)
    bad = np.flatnonzero(off > _CENTROID_TOLERANCE_PX)
    if len(bad):
        problems.append(
            f"{len(bad)} instance centroid(s) lie over {_CENTROID_TOLERANCE_PX} px from their mask mean "
            f"(id: {_examples([f'{ids[i]} by {off[i]:.1f} px' for i in bad])})"
        )
    unclassed = np.flatnonzero(s.inst_classes == 0)
    if len(unclassed):
        problems.append(
            f"{len(unclassed)} instance(s) have class 0, background (id: {_examples([str(ids[i]) for i in unclassed])})"
        )
    differ = np.flatnonzero((s.inst_classes != majority) & (s.inst_classes != 0))
    if len(differ):
        problems.append(
            f"{len(differ)} instance(s) have a class other than the class map's majority under them "
            f"(id: {_examples([f'{ids[i]}: {s.inst_classes[i]} vs {majority[i]}' for i in differ])})"
        )
    stray = int(np.count_nonzero((s.inst_map == 0) & (s.class_map != 0)))
    if stray:
        problems.append(f"{stray} class-map pixel(s) are foreground outside every instance")
    return problems


class Validator:
    """Accumulates statistics sample by sample, so a dataset is validated in one streaming pass."""

    def __init__(self) -> None:
        self._names: set[str] = set()
        self._sources: set[str] = set()
        self._sizes: Counter[str] = Counter()
        self._counts: list[int] = []
        self._histogram: Counter[int] = Counter()
        self._classes: ClassSet | None = None
        self._empty: list[str] = []
        self._problems: list[str] = []

    def add(self, s: Sample) -> None:
        if s.name in self._names:
            self._problems.append(f"{s.name}: duplicate sample name")
        self._names.add(s.name)
        self._sources.add(s.source or s.name)
        if self._classes is None:
            self._classes = s.classes
        elif s.classes != self._classes:
            self._problems.append(f"{s.name}: class set {s.classes.to_list()} differs from {self._classes.to_list()}")
        self._sizes[f"{s.width}x{s.height}"] += 1
        self._counts.append(len(s.inst_ids))
        self._histogram.update(s.inst_classes.tolist())
        if not len(s.inst_ids):
            self._empty.append(s.name)
        self._problems += [f"{s.name}: {p}" for p in _sample_problems(s)]

    def report(self, dataset: str = "", fmt: str = "") -> Report:
        counts = np.asarray(self._counts)
        return Report(
            n_samples=len(counts),
            n_sources=len(self._sources),
            sizes=dict(self._sizes),
            n_instances=int(counts.sum()),
            instances_mean=float(counts.mean()) if len(counts) else 0.0,
            instances_max=int(counts.max()) if len(counts) else 0,
            class_histogram=dict(sorted(self._histogram.items())),
            classes=self._classes.to_list() if self._classes else [],
            empty_tiles=self._empty,
            problems=self._problems,
            dataset=dataset,
            fmt=fmt,
        )


def validate(samples: Iterable[Sample]) -> Report:
    """Statistics and soft problems of `samples`; hard errors raise DataError while reading."""
    validator = Validator()
    for s in samples:
        validator.add(s)
    return validator.report()
