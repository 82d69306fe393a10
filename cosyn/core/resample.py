"""Resampling between resolutions (µm per pixel): one function per map kind, one rule each.

- image: area averaging when it shrinks, bicubic when it grows.
- labels: nearest when they shrink; when they grow, the argmax of the bilinear one-hot (the class
  probabilities), so borders come out smooth rather than in blocks.
- distance: bilinear.
- instances: a generated triple's instances are derived from its distance, labels and centroids, so
  they are cut again, once, at each resolution a triple is delivered at (`at_mpp`); an annotated
  instance map (real data, whose ids are the annotation) is resampled nearest (`resample_instances`).

Every other package resamples through these; nothing else calls cv2.resize on a map.
"""

from __future__ import annotations

import cv2
import numpy as np

from cosyn.core.instances import cut_instances
from cosyn.core.triple import Triple


def resample_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """An image (or a float mask) by area averaging when it shrinks, bicubic when it grows."""
    if image.shape[:2] == (height, width):
        return image
    interp = cv2.INTER_AREA if height < image.shape[0] else cv2.INTER_CUBIC
    return cv2.resize(image, (width, height), interpolation=interp)


def resample_labels(class_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """Class ids nearest when they shrink; when they grow, the most probable class of the bilinear one-hot."""
    if class_map.shape[:2] == (height, width):
        return class_map
    if height < class_map.shape[0]:
        return resample_instances(class_map, height, width)
    classes = int(class_map.max(initial=0)) + 1  # a class absent from the map can never win the argmax
    onehot = (class_map[..., None] == np.arange(classes)).astype(np.float32)
    probs = cv2.resize(onehot, (width, height), interpolation=cv2.INTER_LINEAR).reshape(height, width, classes)
    return probs.argmax(-1).astype(class_map.dtype)


def resample_distance(dist: np.ndarray, height: int, width: int) -> np.ndarray:
    """A float map (the nucleus distance map) bilinear."""
    if dist.shape[:2] == (height, width):
        return dist
    return cv2.resize(dist, (width, height), interpolation=cv2.INTER_LINEAR)


def resample_instances(inst_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """An annotated id map nearest, by pixel centres; safe for int32 ids of any magnitude."""
    rows = np.minimum(((np.arange(height) + 0.5) * inst_map.shape[0] / height).astype(np.int64),
                      inst_map.shape[0] - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * inst_map.shape[1] / width).astype(np.int64),
                      inst_map.shape[1] - 1)
    return inst_map[rows][:, cols]


def at_mpp(triple: Triple, mpp: float, size: tuple[int, int] | None = None) -> Triple:
    """A generated triple at `mpp` µm/px over the same field of view (`size` = (height, width) when the
    caller needs an exact canvas): image, labels and distance by the rules above, the layout rescaled,
    and the instances cut once at the new resolution from the same centroids."""
    here = triple.layout.mpp or triple.params.get("model_mpp")
    if not here:
        raise ValueError("the triple has no mpp to resample from")
    h, w = size or tuple(max(1, round(v * here / mpp)) for v in triple.image.shape[:2])
    if (h, w) == triple.image.shape[:2]:
        return Triple(triple.image, triple.class_map, triple.inst_map, triple.dist_map, dict(triple.inst_classes),
                      triple.layout.rescaled(w, h, mpp), {**triple.params, "output_mpp": mpp})
    layout = triple.layout.rescaled(w, h, mpp)
    class_map = resample_labels(triple.class_map, h, w)
    dist = resample_distance(triple.dist_map, h, w)
    cut = cut_instances(dist, class_map, layout.xy(), layout.class_ids())
    params = {**triple.params, "output_mpp": mpp, "missed_centroids": len(cut.missed),
              "missed_indices": [int(i) for i in cut.missed]}
    return Triple(resample_image(triple.image, h, w), class_map, cut.inst_map, dist, dict(cut.inst_classes),
                  layout, params)
