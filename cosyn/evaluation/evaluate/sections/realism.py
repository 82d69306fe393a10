"""Section 3, realism: FID / KID against the real split tiles, with the real-vs-real floor (real train
tiles vs the split) and the naive baseline (each real tile's class mean colours painted into its
label map); per-class morphology distances (area, eccentricity, solidity) and their figure.

The measures themselves live in cosyn.evaluation.realism; this module decides what is compared
with what. Each metric is a function of one `RealismInputs` returning keys of the section's dict;
`METRICS` lists them in report order. A new metric (say a classifier two-sample test) is one more
function appended there, plus its rows in report.py's `realism_markdown`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cosyn.evaluation.evaluate.config import log
from cosyn.evaluation.evaluate.figures import morphology_figure, save_png
from cosyn.evaluation.evaluate.tiles import Generated, RealData, classes_of
from cosyn.evaluation.realism import (
    frechet_distance,
    inception_features,
    kernel_inception_distance,
    merge_morphology,
    morphology_distances,
    naive_baseline,
    nucleus_morphology,
)


@dataclass
class RealismInputs:
    """What every realism metric may use; all images at the model's mpp."""

    gens: Sequence[Generated]
    real: RealData
    mpp: float
    seed: int
    out: Path  # for figures
    reference: list[np.ndarray]  # the real split tiles' images: what every set is compared against
    sets: dict[str, list[np.ndarray]]  # generated, naive_baseline, real_floor: the compared image sets


RealismMetric = Callable[[RealismInputs], dict[str, Any]]


def realism_inputs(gens: Sequence[Generated], real: RealData, mpp: float, seed: int, out: Path) -> RealismInputs:
    """The compared sets: generated tiles, the naive baseline of their real tiles, and as many real
    train tiles (other sources than the split's) as a floor."""
    rng = np.random.default_rng(seed)
    n = len(gens)
    floor_idx = sorted(rng.choice(len(real.train), size=min(n, len(real.train)), replace=False))
    sets = {
        "generated": [g.sample.image for g in gens],
        "naive_baseline": [naive_baseline(g.real.image, g.real.class_map) for g in gens],
        "real_floor": [real.train[i].image for i in floor_idx],
    }
    return RealismInputs(gens, real, mpp, seed, out, [s.image for s in real.split], sets)


def inception_distances(inputs: RealismInputs) -> dict[str, Any]:
    """FID / KID of each set against the reference: one row per set, keyed by its name."""
    log(f"Inception features of {len(inputs.reference)} reference + {sum(map(len, inputs.sets.values()))} images")
    reference = inception_features(inputs.reference)
    result: dict[str, Any] = {"reference_tiles": len(reference),
                              "note": "FID depends on set size: compare only rows of equal n"}
    for name, images in inputs.sets.items():
        feats = inception_features(images)
        kid, kid_std = kernel_inception_distance(feats, reference, seed=inputs.seed)
        result[name] = {"n": len(images), "fid": frechet_distance(feats, reference), "kid": kid, "kid_std": kid_std}
    return result


def morphology(inputs: RealismInputs) -> dict[str, Any]:
    """Per-class 1-D Wasserstein distances of nucleus shape, generated vs real split; writes morphology.png."""
    real, mpp = inputs.real, inputs.mpp
    morph_real = merge_morphology([nucleus_morphology(s.inst_map, classes_of(s), mpp) for s in real.split])
    morph_gen = merge_morphology([nucleus_morphology(g.sample.inst_map, g.inst_classes, mpp) for g in inputs.gens])
    distances = morphology_distances(morph_real, morph_gen, real.classes.names)
    save_png(inputs.out / "morphology.png", morphology_figure(morph_real, morph_gen, real.classes))
    return {"morphology": distances}


METRICS: list[RealismMetric] = [inception_distances, morphology]


def realism(gens: Sequence[Generated], real: RealData, mpp: float, seed: int, out: Path,
            metrics: Sequence[RealismMetric] | None = None) -> dict[str, Any]:
    """The realism section: every metric of `metrics` (default METRICS) on the same inputs, merged."""
    inputs = realism_inputs(gens, real, mpp, seed, out)
    result: dict[str, Any] = {}
    for metric in METRICS if metrics is None else metrics:
        rows = metric(inputs)
        clash = set(rows) & set(result)
        if clash:  # a silent overwrite would report one metric's numbers under another's name
            raise ValueError(f"realism metric {metric.__name__} repeats keys {sorted(clash)}")
        result.update(rows)
    return result
