"""The dense maps a layout and an instance map imply: the class-id point map the denoiser is conditioned
on, and the nucleus distance map it learns to generate.

Distance map definition (instance separation at sampling depends on it):
    d(p) = EDT_i(p) / max_{q in i} EDT_i(q)   for p in instance i, 0 on background,
where EDT_i is the Euclidean distance to the nearest pixel *outside instance i* (so a
touching neighbour counts as outside). d is 1 at each nucleus' deepest point and falls to
1/max EDT_i (> 0) on its boundary pixels; every foreground pixel is > 0, which lets the
watershed use d > 0 as a foreground cue and -d as the landscape with one basin per nucleus.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


# -- point maps -------------------------------------------------------------------------------
def point_map(xy: np.ndarray, class_ids: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) uint8: class id at each centroid's pixel, 0 elsewhere. x = c is the centre of pixel c
    (HoVer-Net's centroid = mean of pixel indices), so a centroid belongs to pixel round(x).

    When two centroids round to the same pixel the later one wins; at the working
    resolutions nuclei are several pixels apart, so this is rare and harmless.
    """
    out = np.zeros((height, width), dtype=np.uint8)
    if len(xy) == 0:
        return out
    cols = np.clip(np.floor(xy[:, 0] + 0.5).astype(np.int64), 0, width - 1)
    rows = np.clip(np.floor(xy[:, 1] + 0.5).astype(np.int64), 0, height - 1)
    out[rows, cols] = class_ids.astype(np.uint8)
    return out


# -- distance map ----------------------------------------------------------------------------
def distance_map(inst_map: np.ndarray) -> np.ndarray:
    """(H, W) float32 per-nucleus normalised inner distance (see module docstring)."""
    out = np.zeros(inst_map.shape, dtype=np.float32)
    dense = _dense_labels(inst_map)
    for idx, sl in enumerate(ndimage.find_objects(dense)):
        if sl is None:
            continue
        # pad by one so the EDT sees the outside at crop borders
        mask = dense[sl] == idx + 1
        edt = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        out[sl][mask] = (edt[mask] / edt.max()).astype(np.float32)
    return out


def _dense_labels(inst_map: np.ndarray) -> np.ndarray:
    """Ids relabelled to 0..N. find_objects allocates one slot per id value, and tile-wide
    CoNSeP ids run into the thousands."""
    ids, inverse = np.unique(inst_map, return_inverse=True)
    dense = inverse.reshape(inst_map.shape).astype(np.int32)
    return dense if ids[0] == 0 else dense + 1
