"""HoVer-Net format: `Images/*.png` + `Labels/*.mat` (`inst_map`, `type_map`, `inst_type`,
`inst_centroid`). Source = file stem. Class set, tissue and mpp come from an optional `classes.json`
(as in `folder`); without it the class set is CoNSeP's merged 4 classes.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import scipy.io as sio

from cosyn.core.classes import ClassSet
from cosyn.data.formats.common import (
    PathLike,
    SampleSequence,
    _build_sample,
    _class_map,
    _image,
    _instance_map,
    _load_mat,
    _match_partners,
    _Meta,
    _meta_near,
    _read_raster,
    _require_child,
    _save_png,
    _sequence,
    _split_roots,
)
from cosyn.data.sample import Sample

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


def read_hovernet_pair(image_file: PathLike, mat_file: PathLike, classes: ClassSet, mpp: float | None,
                       tissue: str | None = None) -> Sample:
    """One image and its HoVer-Net `.mat` (`inst_map`, `type_map`, `inst_type`, `inst_centroid`)."""
    return _load_hovernet(Path(image_file), Path(mat_file), _Meta(classes=classes, mpp=mpp, tissue=tissue))


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
