"""Pictures of triples: coloured labels, instance contours, point overlays, grids."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw
from skimage.segmentation import find_boundaries

from cosyn.core.classes import ClassSet


def label_to_rgb(class_map: np.ndarray, classes: ClassSet) -> np.ndarray:
    palette = np.array(classes.colours, dtype=np.uint8)
    return palette[np.clip(class_map, 0, len(palette) - 1)]


def overlay_label(image: np.ndarray, class_map: np.ndarray, classes: ClassSet, opacity: float = 0.5) -> np.ndarray:
    rgb = label_to_rgb(class_map, classes).astype(np.float32)
    fg = (class_map > 0)[..., None]
    mixed = image.astype(np.float32) * (1 - opacity * fg) + rgb * opacity * fg
    return mixed.round().astype(np.uint8)


def instance_contours(image: np.ndarray, inst_map: np.ndarray, inst_classes: dict[int, int] | None = None,
                      classes: ClassSet | None = None) -> np.ndarray:
    """Instance boundaries drawn on the image, in class colours where known (else yellow)."""
    out = image.copy()
    edges = find_boundaries(inst_map, mode="inner")
    colour = np.zeros_like(out)
    colour[:] = (255, 255, 0)
    if inst_classes and classes is not None:
        lut = np.zeros((int(inst_map.max()) + 1, 3), dtype=np.uint8)
        lut[:] = (255, 255, 0)
        for i, c in inst_classes.items():
            lut[i] = classes.colours[c]
        colour = lut[inst_map]
    out[edges] = colour[edges]
    return out


def draw_points(image: np.ndarray, xy: np.ndarray, class_ids: np.ndarray, classes: ClassSet,
                radius: float = 3.0) -> np.ndarray:
    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    for (x, y), c in zip(xy, class_ids, strict=True):
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=tuple(classes.colours[int(c)]),
                     outline=(255, 255, 255))
    return np.asarray(pil)


def grid(rows: Sequence[Sequence[np.ndarray]], pad: int = 2) -> np.ndarray:
    """Equal-sized RGB tiles in a white-padded grid."""
    h, w = rows[0][0].shape[:2]
    n_cols = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + pad) + pad, n_cols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y:y + h, x:x + w] = tile[:h, :w]
    return out
