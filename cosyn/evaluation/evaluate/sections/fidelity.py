"""Section 1, layout fidelity: do the conditioning centroids yield instances of the requested
class? Seeded by the point-guided watershed, and paired by centroid at HoVer-Net's radius."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cosyn.core.classes import ClassSet
from cosyn.evaluation.evaluate.tiles import Generated
from cosyn.evaluation.metrics import DetectionAccumulator, pairing_radius_px


def fidelity(gens: Sequence[Generated], classes: ClassSet, mpp: float) -> dict[str, Any]:
    """How far generated instances follow their conditioning centroids.

    Seeded: the instance cutter seeds instance k with the k-th centroid that found nucleus
    foreground within 2 px (ids 1..K in layout order), so a centroid *yields* an instance unless
    it is missed; its class agrees when the pipeline's class of that instance is the requested one;
    `prompted_fraction` is the share of all instances that a centroid seeded (the rest the model
    drew unasked). Paired: instance centroids against layout centroids within HoVer-Net's radius,
    which also fails a seeded instance drawn off-centre.
    """
    nucleus = list(range(1, classes.num_classes))
    det = DetectionAccumulator(pairing_radius_px(mpp), nucleus)
    total = yielded = agree = n_instances = 0
    per_class = {c: [0, 0, 0] for c in nucleus}  # requested, yielded, agreed
    for g in gens:
        missed = set(g.missed)
        requested = g.layout.class_ids()
        next_id = 1
        for i, c in enumerate(requested):
            per_class[int(c)][0] += 1
            if i in missed:
                continue
            ok = g.inst_classes.get(next_id) == int(c)
            per_class[int(c)][1] += 1
            per_class[int(c)][2] += ok
            agree += ok
            next_id += 1
        total += len(requested)
        yielded += len(requested) - len(missed)
        n_instances += len(g.inst_classes)
        det.add(g.layout.xy(), requested, g.sample.centroids, g.sample.inst_classes)
    paired = det.result()
    return {
        "tiles": len(gens),
        "centroids": total,
        "yield": ratio(yielded, total),
        "class_agreement": ratio(agree, yielded),
        "prompted_fraction": ratio(yielded, n_instances),
        "per_class": {classes.names[c]: {"requested": r, "yield": ratio(y, r), "class_agreement": ratio(a, y)}
                      for c, (r, y, a) in per_class.items()},
        "paired": {"radius_px": pairing_radius_px(mpp), "recall": paired["recall_d"],
                   "precision": paired["precision_d"], "f1": paired["f1_d"], "class_agreement": paired["acc"],
                   "f1_c": {classes.names[c]: v for c, v in paired["f1_c"].items()}},
    }


def ratio(num: float, den: float) -> float:
    """num / den, or nan when there was nothing to count (the report turns nan into null)."""
    return float(num / den) if den else float("nan")
