"""Section 3, realism. The headline is a classifier two-sample test: can a small CNN tell generated
crops from real ones (with a real-vs-real control and a blurred-real baseline)? Beside it, FID / KID
against the real split tiles, with the real-vs-real floor (real train tiles vs the split) and the naive
baseline (each real tile's class mean colours painted into its label map); per-class morphology
distances (area, eccentricity, solidity) and their figure.

The measures themselves live in cosyn.evaluation (c2st, realism); this module decides what is
compared with what. Each metric is a function of one `RealismInputs` returning keys of the section's
dict; `METRICS` lists them in report order. A new metric is one more function appended there, plus
its rows in report.py's `realism_markdown`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cosyn.evaluation.c2st import C2STConfig, c2st
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
    c2st: C2STConfig


RealismMetric = Callable[[RealismInputs], dict[str, Any]]


def realism_inputs(gens: Sequence[Generated], real: RealData, mpp: float, seed: int, out: Path,
                   c2st_cfg: C2STConfig | None = None) -> RealismInputs:
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
    return RealismInputs(gens, real, mpp, seed, out, [s.image for s in real.split], sets, c2st_cfg or C2STConfig())


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


def _cross_fitted(real: Sequence[np.ndarray], other: Sequence[np.ndarray], groups: Sequence[str],
                  cfg: C2STConfig) -> dict[str, Any]:
    """C2ST of `other` against `real` (paired by tile), its judge trained on half the source tiles and
    scored on the other half, then the halves swapped; AUCs averaged over the two folds per seed."""
    sources = sorted(set(groups))
    halves = [set(sources[0::2]), set(sources[1::2])]
    folds = []
    for fit, score in (halves, halves[::-1]):
        pick = [[i for i, g in enumerate(groups) if g in half] for half in (fit, score)]
        folds.append(c2st(([real[i] for i in pick[0]], [other[i] for i in pick[0]]),
                          ([real[i] for i in pick[1]], [other[i] for i in pick[1]]), cfg))
    per_seed = [float(np.mean(aucs)) for aucs in zip(*(f["auc_per_seed"] for f in folds), strict=True)]
    return {"auc_mean": float(np.mean(per_seed)), "auc_std": float(np.std(per_seed)), "auc_per_seed": per_seed,
            "crops_per_fold": [f["crops_test"] for f in folds]}


def classifier_two_sample(inputs: RealismInputs) -> dict[str, Any]:
    """Held-out ROC AUC of a judge of real vs generated crops (0.5: indistinguishable), split by
    source tile and cross-fitted; beside it, the same test on real vs real (two disjoint groups of
    real training source tiles) and on the real tiles blurred (σ = 1 px), a soft generator's look.
    Images are compared at the section's mpp as they are: at the model's 0.5 µm/px the JPEG
    blocking of 0.25 µm/px originals no longer shows (benchmarks/refiner_realism.py judges 0.25)."""
    groups = [g.real.source for g in inputs.gens]
    if len(set(groups)) < 2:
        return {"c2st": {"skipped": "needs at least two source tiles in the evaluated split"}}
    if min(min(g.real.image.shape[:2]) for g in inputs.gens) < inputs.c2st.crop:
        return {"c2st": {"skipped": f"tiles smaller than the judge's {inputs.c2st.crop}² crops"}}
    log(f"C2ST: {len(inputs.c2st.seeds)} seeds × 2 folds × 2 rows, {inputs.c2st.steps} judge steps each")
    real = [g.real.image for g in inputs.gens]
    blurred = [cv2.GaussianBlur(im, (0, 0), 1.0) for im in real]
    result = {"generated": _cross_fitted(real, inputs.sets["generated"], groups, inputs.c2st),
              "blurred_real": _cross_fitted(real, blurred, groups, inputs.c2st)}
    train = inputs.real.train
    sources = sorted({t.source for t in train})
    if len(sources) >= 4:  # group g of 4 by source: judge learns group 0 vs 1, is scored on 2 vs 3
        by_group = [[t.image for t in train if sources.index(t.source) % 4 == g] for g in range(4)]
        result["real_vs_real"] = c2st((by_group[0], by_group[1]), (by_group[2], by_group[3]), inputs.c2st)
    return {"c2st": result}


METRICS: list[RealismMetric] = [classifier_two_sample, inception_distances, morphology]


def realism(gens: Sequence[Generated], real: RealData, mpp: float, seed: int, out: Path,
            metrics: Sequence[RealismMetric] | None = None, c2st_cfg: C2STConfig | None = None) -> dict[str, Any]:
    """The realism section: every metric of `metrics` (default METRICS) on the same inputs, merged."""
    inputs = realism_inputs(gens, real, mpp, seed, out, c2st_cfg)
    result: dict[str, Any] = {}
    for metric in METRICS if metrics is None else metrics:
        rows = metric(inputs)
        clash = set(rows) & set(result)
        if clash:  # a silent overwrite would report one metric's numbers under another's name
            raise ValueError(f"realism metric {metric.__name__} repeats keys {sorted(clash)}")
        result.update(rows)
    return result
