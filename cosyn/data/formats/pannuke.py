"""PanNuke format: `images.npy` (N, H, W, 3), `masks.npy` (N, H, W, 6) with instance ids per channel
(neoplastic, inflammatory, connective, dead, epithelial, background), optional `types.npy` beside
`images.npy` (tissue per image; PanNuke's names are normalised to `TISSUES`). The files may sit in
the folder or up to two levels below (PanNuke's own `images/fold1/images.npy` layout). Ids of
different channels collide, so instances are relabelled 1..N in channel order, then by ascending
original id; where channels overlap the later channel wins; the background channel is ignored.
PanNuke has no tile ids, so each image is its own source (`<folder>_<index:05d>`, e.g. `fold1_00042`
for "Fold 1"): a validation split over PanNuke is per image.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cosyn.core.classes import PANNUKE
from cosyn.data.formats.common import (
    PathLike,
    SampleSequence,
    _as_int_array,
    _build_sample,
    _fail,
    _image,
    _image_and_label_stacks,
    _load_npy,
    _prefix,
    _require_classes,
    _sequence,
    _split_root,
    _stack,
    _tissue_name,
)
from cosyn.data.sample import Sample

PANNUKE_MPP = 0.25  # PanNuke is scanned at 40x


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


def write_pannuke(samples: Iterable[Sample], root: PathLike) -> None:
    root = Path(root)
    listed = _stack(_require_classes(samples, PANNUKE, "pannuke"), root)
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "images.npy", np.stack([s.image for s in listed]))
    np.save(root / "masks.npy", np.stack([_pannuke_masks(s) for s in listed]))
    np.save(root / "types.npy", np.array([s.tissue or "" for s in listed]))
