"""The realism yardstick: the two-sample classifier test and the texture statistics."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cosyn.evaluation.c2st import C2STConfig, as_acquired, c2st, crops, roc_auc
from cosyn.evaluation.texture import hematoxylin_distance, laplacian_ratio


def test_roc_auc_counts_ordered_pairs():
    labels = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.5, 0.5])
    pairs = [(p, n) for p in scores[labels == 1] for n in scores[labels == 0]]
    expected = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs])
    assert roc_auc(labels, scores) == pytest.approx(expected)
    with pytest.raises(ValueError):
        roc_auc(np.ones(3), np.zeros(3))


def test_jpeg_acquisition_is_lossy_but_close():
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), (0, 0), 2)
    out = as_acquired(image)
    assert out.shape == image.shape and not np.array_equal(out, image)
    assert np.abs(out.astype(int) - image).mean() < 4


def _textured(rng, n, blur):
    return [cv2.GaussianBlur(rng.integers(60, 220, (32, 32, 3), dtype=np.uint8), (0, 0), blur) for _ in range(n)]


def test_judge_separates_sharp_from_blurred_and_not_a_set_from_itself():
    rng = np.random.default_rng(1)
    sharp, blurred = _textured(rng, 24, 0.6), _textured(rng, 24, 2.5)
    cfg = C2STConfig(crop=16, steps=60, batch=16, seeds=(0, 1))
    apart = c2st((sharp[:12], blurred[:12]), (sharp[12:], blurred[12:]), cfg)
    assert apart["auc_mean"] > 0.95 and len(apart["auc_per_seed"]) == 2
    assert apart["crops_train"] == apart["crops_test"] == 24 * 4
    same = c2st((sharp[:6], sharp[6:12]), (sharp[12:18], sharp[18:]), cfg)
    assert abs(same["auc_mean"] - 0.5) < 0.3
    assert crops(sharp[0], 16)[3].shape == (16, 16, 3) and len(crops(sharp[0], 16)) == 4


def test_texture_statistics():
    rng = np.random.default_rng(2)
    sharp = _textured(rng, 6, 0.5)
    assert laplacian_ratio(sharp, sharp) == pytest.approx(1.0)
    assert laplacian_ratio([cv2.GaussianBlur(s, (0, 0), 2) for s in sharp], sharp) < 0.3
    masks = [np.ones((32, 32), bool)] * 6
    assert hematoxylin_distance(sharp, masks, sharp, masks) == pytest.approx(0.0)
    darker = [(s * 0.6).astype(np.uint8) for s in sharp]
    assert hematoxylin_distance(darker, masks, sharp, masks) > 0.01
