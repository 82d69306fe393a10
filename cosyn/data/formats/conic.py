"""CoNIC (Lizard) format: `images.npy` (N, H, W, 3) + `labels.npy` (N, H, W, 2) = (instance, class),
CoNIC classes, 0.5 mpp, colon. Each image is its own source (`<folder>_<index:05d>`), so a
validation split is per image; `patch_info.csv` (the Lizard image of each patch) is not read.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cosyn.core.classes import CONIC
from cosyn.data.formats.common import (
    PathLike,
    SampleSequence,
    _build_sample,
    _class_map,
    _image,
    _image_and_label_stacks,
    _instance_map,
    _prefix,
    _require_classes,
    _sequence,
    _split_root,
    _stack,
)
from cosyn.data.sample import Sample

CONIC_MPP = 0.5  # Lizard/CoNIC is 20x


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
