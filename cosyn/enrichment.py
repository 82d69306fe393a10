"""A user's rare-class enrichment request (`--enrich inflammatory=2,other=3`, the studio's "Enrich rare
classes"): parsed once, applied to a layout before sampling, recorded in the results' params.

The rules of enrichment are cosyn.core.enrich's; this module is what `augment`, `sample` and the
studio share around them, so the three spell the request, seed it and record it the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from cosyn.core.classes import ClassSet
from cosyn.core.enrich import enrich_layout, parse_enrich
from cosyn.core.layout import Layout
from cosyn.core.triple import Triple

PARAMS_KEY = "enrich"


def parse_request(text: str | None, classes: ClassSet | Sequence[str]) -> dict[str, float] | None:
    """CLASS=FACTOR[,...] as factors; None (enrichment off) for an empty or missing request.
    A bad request raises cosyn.core.enrich.EnrichError (a ValueError) naming the bad item."""
    if text is None or not text.strip():
        return None
    return parse_enrich(text, classes if isinstance(classes, ClassSet) else list(classes))


def enrich(layout: Layout, factors: Mapping[str, float], seed: int | Sequence[int],
           default_mpp: float) -> tuple[Layout, dict[str, Any]]:
    """The enriched layout, drawn from `seed` alone (a rerun gives the same points), and its record for
    params: the factors and the per-class counts before and after."""
    enriched = enrich_layout(layout, factors, np.random.default_rng(seed), default_mpp=default_mpp)
    record = {"factors": dict(sorted(factors.items())), "counts_before": layout.counts(),
              "counts_after": enriched.counts()}
    return enriched, record


def record_in(triples: Iterable[Triple], record: dict[str, Any] | None) -> None:
    """Note the enrichment in each triple's params (params.json of a bundle, meta/ of `augment`)."""
    if record is None:
        return
    for t in triples:
        t.params[PARAMS_KEY] = record
