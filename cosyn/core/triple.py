"""One generated (or real) image / label / instance result, as plain arrays."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cosyn.core.layout import Layout
from cosyn.core.resize import area_resize, linear_resize, nearest_resize


@dataclass
class Triple:
    """- image: (H, W, 3) uint8 RGB
    - class_map: (H, W) uint8 class ids (index into layout.classes)
    - inst_map: (H, W) int32, 0 = background
    - dist_map: (H, W) float32 in [0, 1], the nucleus distance map
    - inst_classes: {instance id: class id}
    - layout: the layout the triple was sampled from (at the triple's resolution)
    - params: seed, steps, guidance, prompt, sampler, checkpoint sha256, version, mpp, missed centroids
    """

    image: np.ndarray
    class_map: np.ndarray
    inst_map: np.ndarray
    dist_map: np.ndarray
    inst_classes: dict[int, int]
    layout: Layout
    params: dict[str, Any] = field(default_factory=dict)


def at_mpp(triple: Triple, mpp: float) -> Triple:
    """The triple resampled to `mpp` µm/px over the same field of view (`--output-mpp`):
    image by area/bicubic, distance map bilinear, label and instance maps nearest, layout rescaled.
    Instances too small to survive a coarser grid leave the instance table too."""
    here = triple.layout.mpp or triple.params.get("model_mpp")
    if not here:
        raise ValueError("the triple has no mpp to resample from")
    factor = here / mpp
    h, w = (max(1, round(v * factor)) for v in triple.image.shape[:2])
    inst = nearest_resize(triple.inst_map, h, w)
    kept = set(np.unique(inst).tolist())
    return Triple(
        image=area_resize(triple.image, h, w),
        class_map=nearest_resize(triple.class_map, h, w),
        inst_map=inst,
        dist_map=linear_resize(triple.dist_map, h, w),
        inst_classes={i: c for i, c in triple.inst_classes.items() if i in kept},
        layout=triple.layout.rescaled(w, h, mpp),
        params={**triple.params, "output_mpp": mpp},
    )
