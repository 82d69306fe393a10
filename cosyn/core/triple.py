"""One generated (or real) image / label / instance result, as plain arrays."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cosyn.core.layout import Layout


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

