"""Random but plausible layouts: a density, a class mix, and nuclei that never overlap.

Placement is dart throwing (random sequential adsorption): each nucleus gets a few random
positions and takes the first that keeps its distance from every placed one. Two nuclei of
classes a and b keep their centres at least (d_a + d_b) / 2 apart, d being the class' typical
diameter, so discs of typical size never overlap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from cosyn.core.layout import MAX_POINTS, Layout, LayoutError, Point

# Median equivalent diameters (µm) measured on the CoNSeP train patches the models are trained
# on (0.25 µm/px as stated); classes of the other datasets by analogy with the nearest one.
NUCLEUS_DIAMETER_UM: dict[str, float] = {
    "other": 2.4, "inflammatory": 3.7, "epithelial": 4.8, "spindle": 3.6,
    "neoplastic": 4.8, "connective": 3.6, "dead": 2.4,
    "neutrophil": 3.7, "lymphocyte": 3.7, "plasma": 3.7, "eosinophil": 3.7,
}
DEFAULT_DIAMETER_UM = 4.0
ATTEMPTS = 40  # positions tried per nucleus before the canvas counts as full for it


def diameter_px(cls: str, mpp: float) -> float:
    return NUCLEUS_DIAMETER_UM.get(cls, DEFAULT_DIAMETER_UM) / mpp


def spacing_px(cls_a: str, cls_b: str, mpp: float) -> float:
    """Least distance between the centres of two nuclei of these classes."""
    return (diameter_px(cls_a, mpp) + diameter_px(cls_b, mpp)) / 2


def requested_count(width: int, height: int, mpp: float, density: float) -> int:
    """Nuclei for `density` per 100 µm² (the unit of the prompt's density words)."""
    return int(round(density * width * height * mpp * mpp / 100.0))


def _class_draws(mix: Mapping[str, float], names: Sequence[str], n: int, rng: np.random.Generator) -> list[str]:
    weights = np.array([max(float(mix.get(c, 0.0)), 0.0) for c in names])
    if weights.sum() <= 0:
        raise LayoutError("the class mix is all zero: raise at least one class")
    return [names[i] for i in rng.choice(len(names), size=n, p=weights / weights.sum())]


def random_layout_of_density(width: int, height: int, mpp: float, classes: Sequence[str], density: float,
                  mix: Mapping[str, float], seed: int = 0, tissue: str | None = None) -> Layout:
    """A layout of about `requested_count(...)` nuclei; fewer when the canvas fills up first
    (compare len(points) with the request to tell the user)."""
    if not 0 <= density <= 20:
        raise LayoutError(f"density {density} must lie in 0..20 nuclei per 100 µm²")
    n = requested_count(width, height, mpp, density)
    if n > MAX_POINTS:
        raise LayoutError(f"{n} nuclei exceed the limit of {MAX_POINTS} points; lower the density or the canvas")
    rng = np.random.default_rng(seed)
    names = list(classes[1:])
    cell = max(spacing_px(a, b, mpp) for a in names for b in names)  # neighbours lie in the 3x3 cells
    grid: dict[tuple[int, int], list[int]] = {}
    xs: list[float] = []
    ys: list[float] = []
    cls: list[str] = []
    for c in _class_draws(mix, names, n, rng):
        # centi-pixel positions keep the JSON short; floor keeps them inside the canvas
        for x, y in np.floor(rng.uniform((0, 0), (width, height), size=(ATTEMPTS, 2)) * 100) / 100:
            gx, gy = int(x // cell), int(y // cell)
            near = (j for dx in (-1, 0, 1) for dy in (-1, 0, 1) for j in grid.get((gx + dx, gy + dy), ()))
            if all(math.hypot(xs[j] - x, ys[j] - y) >= spacing_px(c, cls[j], mpp) for j in near):
                grid.setdefault((gx, gy), []).append(len(xs))
                xs.append(float(x))
                ys.append(float(y))
                cls.append(c)
                break
    points = [Point(x, y, c) for x, y, c in zip(xs, ys, cls, strict=True)]
    return Layout(width, height, list(classes), points, mpp, tissue)
