"""The calibrated realism judge: the classifier two-sample test, its source split, its calibration
lines and the withheld verdict, and the texture and label–image agreement statistics."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cosyn.evaluation.c2st import C2STConfig, as_acquired, c2st, crops, roc_auc
from cosyn.evaluation.judge import Bar, View, alternate_halves, calibrated, calibration, compare, source_halves
from cosyn.evaluation.judge_report import NOT_CALIBRATED, realism_judge_markdown
from cosyn.evaluation.texture import (
    hematoxylin_auc,
    hematoxylin_distance,
    laplacian_ratio,
    median_hematoxylin_auc,
)

TINY = C2STConfig(crop=16, steps=60, batch=16, lr=3e-3, width=4, seeds=(0, 1))


def _textured(rng: np.random.Generator, n: int, blur: float, size: int = 32) -> list[np.ndarray]:
    return [cv2.GaussianBlur(rng.integers(60, 220, (size, size, 3), dtype=np.uint8), (0, 0), blur) for _ in range(n)]


def test_roc_auc_counts_ordered_pairs():
    labels = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.5, 0.5])
    pairs = [(p, n) for p in scores[labels == 1] for n in scores[labels == 0]]
    expected = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs])
    assert roc_auc(labels, scores) == pytest.approx(expected)
    with pytest.raises(ValueError):
        roc_auc(np.ones(3), np.zeros(3))


def test_jpeg_acquisition_is_lossy_but_close_and_nearly_idempotent():
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), (0, 0), 2)
    once = as_acquired(image)
    assert once.shape == image.shape and not np.array_equal(once, image)
    assert np.abs(once.astype(int) - image).mean() < 4
    # why matching both sides is fair: a second q75 pass barely moves a q75 JPEG (the real tiles)
    assert np.abs(as_acquired(once).astype(int) - once).mean() < 0.5 * np.abs(once.astype(int) - image).mean()


def test_judge_separates_sharp_from_blurred_and_not_a_set_from_itself():
    rng = np.random.default_rng(1)
    sharp, blurred = _textured(rng, 24, 0.6), _textured(rng, 24, 2.5)
    apart = c2st((sharp[:12], blurred[:12]), (sharp[12:], blurred[12:]), TINY)
    assert apart["auc_mean"] > 0.95 and len(apart["auc_per_seed"]) == 2
    assert apart["tiles_train"] == 24 and apart["crops_test"] == 24 * 4
    same = c2st((sharp[:6], sharp[6:12]), (sharp[12:18], sharp[18:]), TINY)
    assert abs(same["auc_mean"] - 0.5) < 0.2
    assert crops(sharp[0], 16)[3].shape == (16, 16, 3) and len(crops(sharp[0], 16)) == 4
    with pytest.raises(ValueError, match="at least 64"):
        c2st((sharp, blurred), (sharp, blurred), C2STConfig(crop=64))


def test_source_halves_are_disjoint_and_successive_seeds_take_distinct_partitions():
    sources = ["a", "b", "c", "d"]
    partitions = set()
    for seed in range(3):
        fit, score = source_halves(sources, seed)
        assert fit.isdisjoint(score) and fit | score == set(sources) and len(fit) == 2
        partitions.add(frozenset([frozenset(fit), frozenset(score)]))
    assert len(partitions) == 3
    with pytest.raises(ValueError, match="at least 2 source"):
        source_halves(["a", "a"], 0)
    assert alternate_halves(["a", "a", "b", "a", "b"]) == ([0, 2, 3], [1, 4])


def _real_set(rng: np.random.Generator, per_source: int = 6) -> tuple[list[np.ndarray], list[str]]:
    images = _textured(rng, 4 * per_source, 0.6)
    return images, [f"s{i % 4}" for i in range(len(images))]


def test_compare_sees_heavy_blur_by_source_and_is_chance_on_the_same_distribution():
    rng = np.random.default_rng(2)
    real, sources = _real_set(rng)
    blurred = [cv2.GaussianBlur(im, (0, 0), 2.0) for im in real]
    seen = compare(real, sources, blurred, sources, TINY, View(jpeg=False))
    assert seen["auc_mean"] > 0.9 and len(seen["auc_per_seed"]) == 2
    other, _ = _real_set(rng)
    chance = compare(real, sources, other, sources, TINY, View(jpeg=False))
    assert abs(chance["auc_mean"] - 0.5) < 0.2
    with pytest.raises(ValueError, match="share all their source tiles or none"):
        compare(real, sources, other, ["s0"] + ["x"] * (len(other) - 1), TINY)


def test_calibration_lines_carry_their_bars_and_a_judge_that_cannot_learn_fails_them():
    rng = np.random.default_rng(3)
    real, sources = _real_set(rng)
    train = _textured(rng, 8, 0.8)
    lines = calibration(real, sources, train, [f"t{i % 2}" for i in range(8)],
                        C2STConfig(crop=16, steps=1, batch=4, width=2, seeds=(0,)), View(jpeg=False))
    assert list(lines) == ["real_vs_real", "blur_1px", "half_res_bicubic", "train_vs_val"]
    assert lines["blur_1px"]["bar"] == "≥ 0.95" and lines["train_vs_val"]["bar"] == "reported"
    assert lines["train_vs_val"]["pass"]  # no bar: reported only
    assert not lines["blur_1px"]["pass"] and not calibrated(lines)  # one step cannot see a 1 px blur
    assert Bar(0.45, 0.55).passes(0.5) and not Bar(0.45, 0.55).passes(0.56) and str(Bar(0.95)) == "≥ 0.95"


def _c2st_section(lines_pass: bool) -> dict:
    line = {"auc_mean": 0.5, "auc_std": 0.01, "auc_per_seed": [0.5], "bar": "0.45–0.55", "pass": True,
            "text": "real vs real, disjoint source tiles"}
    blur = {**line, "auc_mean": 0.99 if lines_pass else 0.6, "bar": "≥ 0.95", "pass": lines_pass,
            "text": "blur"}
    floor = {**line, "auc_mean": 0.8, "auc_per_seed": [0.8], "bar": "reported", "text": "floor"}
    lines = {"real_vs_real": line, "blur_1px": blur, "train_vs_val": floor}
    return {"calibration": lines, "calibrated": calibrated(lines), "calibration_mpp": 0.25, "mpp": 0.25,
            "generated": {"auc_mean": 0.777, "auc_std": 0.02, "auc_per_seed": [0.777]}, "floor": floor,
            "verdict": {"target": "<= floor + 0.05 = 0.850", "pass": True} if lines_pass else None}


def test_report_withholds_the_verdict_when_a_calibration_line_fails():
    texture = {"laplacian_ratio": 0.7, "h_auc_generated": 0.9, "h_auc_real": 0.88}
    shown = "\n".join(realism_judge_markdown(_c2st_section(True), texture))
    assert "0.777" in shown and "met" in shown and NOT_CALIBRATED not in shown
    assert "minus floor, paired by seed, -0.023 ± 0.000" in shown
    withheld = "\n".join(realism_judge_markdown(_c2st_section(False), texture))
    assert NOT_CALIBRATED in withheld and "0.777" not in withheld and "**no**" in withheld
    assert "0.600" in withheld  # the failing line itself is shown
    assert "Laplacian-variance ratio, generated / real: 0.70" in withheld


def test_texture_statistics():
    rng = np.random.default_rng(4)
    sharp = _textured(rng, 6, 0.5)
    assert laplacian_ratio(sharp, sharp) == pytest.approx(1.0)
    assert laplacian_ratio([cv2.GaussianBlur(s, (0, 0), 2) for s in sharp], sharp) < 0.3
    masks = [np.ones((32, 32), bool)] * 6
    assert hematoxylin_distance(sharp, masks, sharp, masks) == pytest.approx(0.0)
    darker = [(s * 0.6).astype(np.uint8) for s in sharp]
    assert hematoxylin_distance(darker, masks, sharp, masks) > 0.01


def test_hematoxylin_auc_is_one_where_nuclei_sit_on_the_mask_and_chance_for_a_shuffled_mask():
    rng = np.random.default_rng(5)
    mask = np.zeros((64, 64), bool)
    for cy, cx in rng.integers(6, 58, (12, 2)):
        cv2.circle(mask.view(np.uint8), (int(cx), int(cy)), 4, 1, -1)
    image = np.empty((64, 64, 3), np.uint8)
    image[:] = (235, 200, 225)  # pale eosin-pink stroma
    image[mask] = (70, 40, 140)  # hematoxylin-dark nuclei
    image = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
    assert hematoxylin_auc(image, mask) > 0.99
    shuffled = rng.permutation(mask.ravel()).reshape(mask.shape)
    assert abs(hematoxylin_auc(image, shuffled) - 0.5) < 0.1
    assert np.isnan(hematoxylin_auc(image, np.zeros_like(mask)))
    assert median_hematoxylin_auc([image, image], [mask, np.zeros_like(mask)]) > 0.99
