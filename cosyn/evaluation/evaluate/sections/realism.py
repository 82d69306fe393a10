"""Section 3, realism. The headline is the calibrated classifier two-sample test (cosyn.evaluation.judge):
can a small CNN tell generated crops from real ones, printed with the calibration lines that show it
sees blur and half resolution, and withheld when they fail? Beside it, the Laplacian-variance ratio and
the hematoxylin AUC of nucleus pixels (label–image agreement); FID / KID against the real split tiles,
with the real-vs-real floor (real train tiles vs the split) and the naive
distances (area, eccentricity, solidity) and their figure.

The measures themselves live in cosyn.evaluation (c2st, realism); this module decides what is
compared with what. Each metric is a function of one `RealismInputs` returning keys of the section's
dict; `METRICS` lists them in report order. A new metric is one more function appended there, plus
its rows in report.py's `realism_markdown`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cosyn.evaluation.c2st import C2STConfig
from cosyn.evaluation.evaluate.config import log
from cosyn.evaluation.evaluate.figures import morphology_figure, save_png
from cosyn.evaluation.evaluate.tiles import Generated, RealData, classes_of
from cosyn.evaluation.judge import FLOOR_MARGIN, JUDGE_MPP, calibrated, calibration, compare, floor_tiles
from cosyn.evaluation.realism import (
    frechet_distance,
    inception_features,
    kernel_inception_distance,
    merge_morphology,
    morphology_distances,
    naive_baseline,
    nucleus_morphology,
)
from cosyn.evaluation.texture import laplacian_ratio, median_hematoxylin_auc


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
    native: RealData  # the real tiles at the judge's JUDGE_MPP, for its calibration lines


RealismMetric = Callable[[RealismInputs], dict[str, Any]]


def realism_inputs(gens: Sequence[Generated], real: RealData, mpp: float, seed: int, out: Path,
                   c2st_cfg: C2STConfig | None = None, native: RealData | None = None) -> RealismInputs:
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
    return RealismInputs(gens, real, mpp, seed, out, [s.image for s in real.split], sets, c2st_cfg or C2STConfig(),
                         native or real)


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


def classifier_two_sample(inputs: RealismInputs) -> dict[str, Any]:
    """The calibrated judge (cosyn.evaluation.judge): its calibration lines on the real tiles at
    0.25 µm/px, then generated vs real split tiles at the section's mpp, split by source tile, both
    sides JPEG q75 (crops cover the same µm at every mpp). The verdict, AUC ≤ the training-vs-
    validation floor (at the section's mpp) + FLOOR_MARGIN, is withheld (None) when a calibration
    line fails."""
    gens = inputs.gens
    groups = [g.real.source for g in gens]
    if len(set(groups)) < 2:
        return {"c2st": {"skipped": "needs at least two source tiles in the evaluated split"}}
    cfg = replace(inputs.c2st, crop=max(8, round(inputs.c2st.crop * JUDGE_MPP / inputs.mpp)))
    if min(min(g.real.image.shape[:2]) for g in gens) < cfg.crop:
        return {"c2st": {"skipped": f"tiles smaller than the judge's {cfg.crop}² crops"}}
    native = inputs.native
    floor_idx = floor_tiles(len(native.train), inputs.seed)
    floor = [native.train[i] for i in floor_idx]
    log(f"C2ST: 4 calibration lines + the generated row, {len(cfg.seeds)} seeds, {cfg.steps} judge steps each")
    lines = calibration([s.image for s in native.split], [s.source for s in native.split], [s.image for s in floor],
                        [s.source for s in floor], inputs.c2st, log=log)
    generated = compare([g.real.image for g in gens], groups, inputs.sets["generated"], groups, cfg)
    result = {"calibration": lines, "calibrated": calibrated(lines), "calibration_mpp": JUDGE_MPP,
              "generated": generated, "mpp": inputs.mpp, "floor": lines["train_vs_val"]}
    if inputs.mpp != JUDGE_MPP:  # the verdict compares like with like: the floor at the generated tiles' mpp
        floor_here = [inputs.real.train[i] for i in floor_idx]
        result["floor"] = compare([s.image for s in inputs.real.split], [s.source for s in inputs.real.split],
                                  [s.image for s in floor_here], [s.source for s in floor_here], cfg)
    target = result["floor"]["auc_mean"] + FLOOR_MARGIN
    result["verdict"] = ({"target": f"<= floor + {FLOOR_MARGIN} = {target:.3f}",
                          "pass": generated["auc_mean"] <= target} if result["calibrated"] else None)
    return {"c2st": result}


def texture(inputs: RealismInputs) -> dict[str, Any]:
    """Sharpness (Laplacian-variance ratio, generated over real) and label–image agreement: the median
    hematoxylin AUC of nucleus pixels, for the generated tiles and for the real ones with their own
    annotations."""
    real = inputs.real.split
    return {"texture": {
        "laplacian_ratio": laplacian_ratio(inputs.sets["generated"], inputs.reference),
        "h_auc_generated": median_hematoxylin_auc([g.sample.image for g in inputs.gens],
                                                  [g.sample.inst_map > 0 for g in inputs.gens]),
        "h_auc_real": median_hematoxylin_auc([s.image for s in real], [s.inst_map > 0 for s in real])}}


METRICS: list[RealismMetric] = [classifier_two_sample, texture, inception_distances, morphology]


def realism(gens: Sequence[Generated], real: RealData, mpp: float, seed: int, out: Path,
            metrics: Sequence[RealismMetric] | None = None, c2st_cfg: C2STConfig | None = None,
            native: RealData | None = None) -> dict[str, Any]:
    """The realism section: every metric of `metrics` (default METRICS) on the same inputs, merged.
    `native`: the real tiles at the judge's 0.25 µm/px for its calibration lines (default: `real`)."""
    inputs = realism_inputs(gens, real, mpp, seed, out, c2st_cfg, native)
    result: dict[str, Any] = {}
    for metric in METRICS if metrics is None else metrics:
        rows = metric(inputs)
        clash = set(rows) & set(result)
        if clash:  # a silent overwrite would report one metric's numbers under another's name
            raise ValueError(f"realism metric {metric.__name__} repeats keys {sorted(clash)}")
        result.update(rows)
    return result
