"""CoNSeP format: `images/<split>/*.jpg|png`, `inst/<split>/*.npy`, `type_mat/<split>/*.mat`
(`inst_type`, `inst_centroid`), `seg_mask/<split>/*.png`. CoNSeP's 4 merged classes, 0.25 mpp,
colon. Instance ids are the whole tile's ids and are kept. A patch `train_12_007` has source
`train_12`. The writer stores images as PNG, because JPEG would not round-trip.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import scipy.io as sio

from cosyn.core.classes import CONSEP
from cosyn.data.formats.common import (
    PathLike,
    SampleSequence,
    _build_sample,
    _class_map,
    _image,
    _instance_map,
    _load_mat,
    _load_npy,
    _match_partners,
    _read_raster,
    _require_child,
    _require_classes,
    _save_png,
    _sequence,
    _subdirs,
)
from cosyn.data.sample import Sample

CONSEP_MPP = 0.25


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
