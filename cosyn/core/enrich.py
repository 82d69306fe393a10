"""Rare-class enrichment of a layout: about `factor` times as many nuclei of each named class.

A pure function of (layout, factors, rng), so a user's `--enrich inflammatory=2,other=3` gives the
same layouts for the same seed. The rules, in the spirit of NucleiMix's context-aware insertion:

- Spacing. No two nuclei closer than `spacing` = max(3 µm, the 5th percentile of the tile's own
  nearest-neighbour distances): 3 µm is the detection pairing radius of HoVer-Net's evaluation,
  so closer centroids would be one nucleus. New nuclei are placed at 1-2 `typical` distances
  from a parent, `typical` = the median nearest-neighbour distance of the tile (at least `spacing`).
- Present class (n > 0 nuclei): round(factor · n) − n nuclei are added, each beside a random
  parent of the same class (original or already added, so clusters such as infiltrates grow
  as clusters), inside the canvas and at least `spacing` from every nucleus. The additions of
  all classes are drawn in one shuffled queue, so no class takes the free room first. A nucleus
  that finds no room in `tries` draws is left out: in a crowded tile the counts stay below target.
  Existing nuclei keep their positions and classes.
- Absent class (n = 0, factor > 1): there is no parent to copy, so round(factor − 1) (at least
  one) existing nuclei are relabelled: taken from the tile's most common class that is not being
  enriched, preferring the nuclei with the fewest neighbours of their own class within two
  `typical` distances (the edge of a mixed region, where another cell type plausibly sits, not
  the middle of a gland or a fibre bundle). These seeds are not multiplied further, and they are
  the only nuclei whose class changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from cosyn.core.classes import ClassSet
from cosyn.core.layout import Layout

MIN_SPACING_UM = 3.0
SPACING_PERCENTILE = 5
MAX_FACTOR = 10.0
DEFAULT_MPP = 0.5  # the layout contract: a layout without mpp is at the model's mpp
FALLBACK_TYPICAL_UM = 8.0  # a tile with under two nuclei has no neighbour distances


class EnrichError(ValueError):
    """A bad enrichment request; the message says which part and why."""


def parse_enrich(text: str, classes: ClassSet | list[str]) -> dict[str, float]:
    """"inflammatory=2,other=3" → {"inflammatory": 2.0, "other": 3.0}; names are case-insensitive,
    factors finite and within 1..10."""
    names = list(classes.names if isinstance(classes, ClassSet) else classes)[1:]
    out: dict[str, float] = {}
    for item in text.split(","):
        if not item.strip():
            raise EnrichError(f"enrich {text!r}: empty item; write CLASS=FACTOR[,CLASS=FACTOR...]")
        name, sep, value = item.partition("=")
        name = name.strip().lower()
        if not sep:
            raise EnrichError(f"enrich {item.strip()!r}: expected CLASS=FACTOR")
        if name not in names:
            raise EnrichError(f"enrich {item.strip()!r}: unknown class {name!r}; known: {', '.join(names)}")
        if name in out:
            raise EnrichError(f"enrich {text!r}: class {name!r} given twice")
        try:
            factor = float(value)
        except ValueError:
            raise EnrichError(f"enrich {item.strip()!r}: factor {value.strip()!r} is not a number") from None
        if not math.isfinite(factor) or not 1.0 <= factor <= MAX_FACTOR:
            raise EnrichError(f"enrich {item.strip()!r}: factor must be a finite number within 1..{MAX_FACTOR:g}")
        out[name] = factor
    return out


def _nn_distances(xy: np.ndarray) -> np.ndarray:
    if len(xy) < 2:
        return np.zeros(0)
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    return d.min(1)


def spacings(layout: Layout, default_mpp: float = DEFAULT_MPP) -> tuple[float, float]:
    """(minimum, typical) centre-to-centre distances in pixels for new nuclei in `layout`."""
    mpp = layout.mpp or default_mpp
    nn = _nn_distances(layout.xy())
    floor = MIN_SPACING_UM / mpp
    minimum = max(floor, float(np.percentile(nn, SPACING_PERCENTILE))) if nn.size else floor
    typical = max(minimum, float(np.median(nn)) if nn.size else FALLBACK_TYPICAL_UM / mpp)
    return minimum, typical


def _donors(xy: np.ndarray, cls: np.ndarray, k: int, enriched: set[int], typical: float) -> np.ndarray:
    """Indices of the `k` nuclei an absent class takes over: from the commonest class not being
    enriched, those with the fewest neighbours of their own class within 2 · `typical` (ties: the
    lower index, so the choice is deterministic)."""
    counts = {int(c): int(np.sum(cls == c)) for c in np.unique(cls) if int(c) not in enriched}
    if not counts:
        return np.zeros(0, np.int64)
    donor = max(sorted(counts), key=lambda c: counts[c])
    idx = np.flatnonzero(cls == donor)
    d = np.hypot(*(xy[idx][:, None, :] - xy[idx][None, :, :]).transpose(2, 0, 1))
    own_neighbours = (d <= 2 * typical).sum(1) - 1
    return idx[np.argsort(own_neighbours, kind="stable")[:k]]


def enrich_layout(layout: Layout, factors: Mapping[str, float], rng: np.random.Generator,
                  tries: int = 30, default_mpp: float = DEFAULT_MPP) -> Layout:
    """`layout` with about factor × as many nuclei of each named class (module docstring for the rules).
    Only the named classes change; `default_mpp` is the layout's mpp when it has none."""
    class_set = layout.class_set
    unknown = sorted(set(factors) - set(class_set.names[1:]))
    if unknown:
        raise EnrichError(f"enrich: unknown classes {unknown}; known: {', '.join(class_set.names[1:])}")
    bad = {k: v for k, v in factors.items() if not (math.isfinite(v) and 1.0 <= v <= MAX_FACTOR)}
    if bad:
        raise EnrichError(f"enrich: factors must be finite and within 1..{MAX_FACTOR:g}, got {bad}")
    xy = layout.xy()
    cls = layout.class_ids().astype(np.int64)
    minimum, typical = spacings(layout, default_mpp)
    ids = {name: class_set.id_of(name) for name in sorted(factors)}  # sorted: rng use is order-free
    present = {c: int(np.sum(cls == c)) for c in ids.values()}
    for name, c in ids.items():
        if factors[name] > 1 and not present[c]:
            cls[_donors(xy, cls, max(1, round(factors[name] - 1)), set(ids.values()), typical)] = c

    # Additions for the classes present before: the swapped-in seeds of an absent class do not multiply.
    queue = np.concatenate([np.full(round(factors[n] * present[c]) - present[c], c, np.int64)
                            for n, c in ids.items()] or [np.zeros(0, np.int64)])
    out_xy, out_cls = list(xy), list(cls)
    for c in rng.permutation(queue):
        parents = [q for q, k in zip(out_xy, out_cls, strict=True) if k == c]
        for _ in range(tries):
            angle, radius = rng.uniform(0, 2 * np.pi), typical * rng.uniform(1.0, 2.0)
            p = parents[rng.integers(len(parents))] + radius * np.array([np.cos(angle), np.sin(angle)])
            inside = 0 <= p[0] < layout.width and 0 <= p[1] < layout.height
            if inside and np.min(np.hypot(*(np.array(out_xy) - p).T)) >= minimum:
                out_xy.append(p)
                out_cls.append(int(c))
                break
    return Layout.from_arrays(layout.width, layout.height, layout.classes, np.array(out_xy).reshape(-1, 2),
                              np.array(out_cls, np.int64), mpp=layout.mpp, tissue=layout.tissue,
                              prompt=layout.prompt)
