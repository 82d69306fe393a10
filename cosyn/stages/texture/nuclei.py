"""The nucleus catalogue of a texture bank: every whole nucleus of its tiles (not cut by a tile's border)
with its class, size, shape and the colour of its surroundings. It is computed once, when the bank is
built, and stored inside the bank, so a stage loads in about a second."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
from scipy import ndimage as ndi

MARGIN = 3  # px of real surroundings carried with a pasted nucleus, so its edge blends into tissue


@dataclass
class Nuclei:
    """One row per whole nucleus (not touching its tile's border) of the bank."""

    tile: np.ndarray  # (N,) tile index
    inst_id: np.ndarray  # (N,) id in that tile's instance map
    cls: np.ndarray  # (N,) class id
    box: np.ndarray  # (N, 4) y0, x0, y1, x1 of the crop: the nucleus' box grown by MARGIN
    log_area: np.ndarray  # (N,)
    elongation: np.ndarray  # (N,) 1 - minor/major axis, 0 for a circle
    theta: np.ndarray  # (N,) orientation of the major axis, radians in [-π/2, π/2), x right, y down
    ring: np.ndarray  # (N, 3) mean RGB of the MARGIN-px ring around the nucleus

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {f.name: np.ascontiguousarray(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Nuclei:
        return cls(**{f.name: arrays[f.name] for f in fields(cls)})


def shape_moments(masks: np.ndarray, labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area, elongation and major-axis angle of each label 1..n of `labels` (0 = none), from second moments."""
    y, x = np.nonzero(masks & (labels > 0))  # only the labelled pixels: a tile is mostly background
    flat = labels[y, x]
    x, y = x.astype(np.float64), y.astype(np.float64)

    def total(v: np.ndarray) -> np.ndarray:
        return np.bincount(flat, weights=v, minlength=n + 1)[1:]

    area = total(np.ones_like(x))
    safe = np.maximum(area, 1)
    mx, my = total(x) / safe, total(y) / safe
    cxx, cyy, cxy = total(x * x) / safe - mx**2, total(y * y) / safe - my**2, total(x * y) / safe - mx * my
    spread = np.sqrt(((cxx - cyy) / 2) ** 2 + cxy**2)
    major, minor = (cxx + cyy) / 2 + spread, np.maximum((cxx + cyy) / 2 - spread, 0)
    elongation = 1 - np.sqrt(minor / np.maximum(major, 1e-9))
    theta = 0.5 * np.arctan2(2 * cxy, cxx - cyy)
    return area, elongation, theta


def nuclei_of(tiles: Sequence) -> Nuclei:
    """The catalogue of `tiles` (objects with image, inst_map and inst_classes, as BankTile)."""
    fields = ("tile", "inst_id", "cls", "box", "log_area", "elongation", "theta", "ring")
    parts: dict[str, list] = {k: [] for k in fields}
    for t, tile in enumerate(tiles):
        inst = tile.inst_map
        n = int(inst.max(initial=0))
        if n == 0:
            continue
        area, elongation, theta = shape_moments(inst > 0, inst, n)
        ring_labels = np.where(inst == 0, ndi.grey_dilation(inst, size=2 * MARGIN + 1), 0)
        ring_count = np.maximum(np.bincount(ring_labels.ravel(), minlength=n + 1)[1:], 1)
        ring = np.stack([np.bincount(ring_labels.ravel(), weights=tile.image[..., c].ravel().astype(np.float64),
                                     minlength=n + 1)[1:] / ring_count for c in range(3)], 1)
        h, w = inst.shape
        for i, sl in enumerate(ndi.find_objects(inst), start=1):
            cls = tile.inst_classes.get(i, 0)
            if sl is None or cls == 0 or area[i - 1] < 4:
                continue
            y0, y1, x0, x1 = sl[0].start - MARGIN, sl[0].stop + MARGIN, sl[1].start - MARGIN, sl[1].stop + MARGIN
            if y0 < 0 or x0 < 0 or y1 > h or x1 > w:  # cut by the tile's border: not a whole nucleus
                continue
            for key, v in (("tile", t), ("inst_id", i), ("cls", cls), ("box", (y0, x0, y1, x1)),
                           ("log_area", np.log(area[i - 1])), ("elongation", elongation[i - 1]),
                           ("theta", theta[i - 1]), ("ring", ring[i - 1])):
                parts[key].append(v)
    dtypes = {"tile": np.int32, "inst_id": np.int32, "cls": np.int32, "box": np.int32}
    return Nuclei(**{k: np.asarray(v, dtypes.get(k, np.float32)).reshape(-1, 4) if k == "box"
                     else np.asarray(v, dtypes.get(k, np.float32)).reshape(-1, 3) if k == "ring"
                     else np.asarray(v, dtypes.get(k, np.float32)) for k, v in parts.items()})
