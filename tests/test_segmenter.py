"""Downstream segmenter: learns disc fixtures, post-processing, persistence, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import disc_sample

from cosyn.core.classes import CONSEP
from cosyn.data.dataset import resample_sample
from cosyn.evaluation.segmenter import (
    Segmenter,
    SegmenterConfig,
    SegTile,
    SegTrainConfig,
    Truth,
    postprocess,
    score,
    train_segmenter,
)

MPP = 0.25  # the disc fixtures' own resolution: no resampling in these tests
TINY = {"widths": (8, 16, 32)}


def _discs(seed: int, name: str):
    return disc_sample(n=25, size=(64, 64), radius=4, name=name, seed=seed)


@pytest.fixture(scope="module")
def trained() -> Segmenter:
    tiles = [SegTile.from_sample(_discs(i, f"t{i}_000"), MPP) for i in range(4)]
    cfg = SegmenterConfig(CONSEP.to_list(), mpp=MPP, **TINY)
    return train_segmenter(tiles, cfg, SegTrainConfig(steps=120, batch=4, crop=48, lr=5e-3, warmup=10),
                           progress=False)


def test_learns_to_segment_discs(trained):
    truths = [Truth.from_sample(_discs(10 + i, f"v{i}_000")) for i in range(2)]
    result = score(trained, truths)
    assert result["pq"] > 0.7, result
    assert result["dice"] > 0.85, result
    assert result["f1_d"] > 0.85, result
    assert set(result["f1_c"]) == set(CONSEP.nucleus_names)


def test_save_load_roundtrip(trained, tmp_path):
    trained.save(tmp_path / "seg")
    loaded = Segmenter.load(tmp_path / "seg")
    image = _discs(20, "x_000").image
    a, b = trained.predict(image), loaded.predict(image)
    np.testing.assert_array_equal(a.inst_map, b.inst_map)
    assert loaded.train_info["steps"] == 120
    assert loaded.config == trained.config


def test_load_rejects_mismatched_weights(trained, tmp_path):
    trained.save(tmp_path / "seg")
    other = Segmenter.new(SegmenterConfig(CONSEP.to_list(), mpp=MPP, widths=(8, 16)))
    other.save(tmp_path / "other")
    (tmp_path / "other" / "segmenter.safetensors").replace(tmp_path / "seg" / "segmenter.safetensors")
    with pytest.raises(ValueError, match="do not match"):
        Segmenter.load(tmp_path / "seg")


def test_training_is_deterministic():
    tiles = [SegTile.from_sample(_discs(0, "t0_000"), MPP)]
    cfg = SegmenterConfig(CONSEP.to_list(), mpp=MPP, **TINY)
    run = SegTrainConfig(steps=3, batch=2, crop=32, seed=7)
    a, b = (train_segmenter(tiles, cfg, run, progress=False) for _ in range(2))
    for (k, va), vb in zip(a.net.state_dict().items(), b.net.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k


def test_postprocess_splits_touching_nuclei_and_drops_specks():
    probs = np.zeros((2, 40, 40), np.float32)
    probs[0] = 1.0
    dist = np.zeros((40, 40), np.float32)
    yy, xx = np.indices((40, 40))
    for cx in (12, 22):  # two touching discs of radius 6
        r = np.hypot(yy - 20, xx - cx)
        inside = r <= 6
        probs[0][inside], probs[1][inside] = 0.0, 1.0
        dist[inside] = np.maximum(dist[inside], 1 - r[inside] / 7)
    probs[0, 2, 2], probs[1, 2, 2] = 0.0, 1.0  # a one-pixel speck
    inst = postprocess(probs, dist, fg_threshold=0.5, marker_threshold=0.5, min_area=4)
    assert inst.dtype == np.int32
    assert sorted(np.unique(inst).tolist()) == [0, 1, 2]
    assert inst[20, 12] != inst[20, 22]
    assert inst[2, 2] == 0


def test_resample_sample_halves_and_keeps_classes():
    s = disc_sample(n=9, size=(64, 64), radius=5)
    half = resample_sample(s, 0.5)
    assert half.image.shape == (32, 32, 3) and half.inst_map.shape == (32, 32)
    assert half.mpp == 0.5 and len(half.inst_ids) == 9
    assert sorted(half.inst_classes.tolist()) == sorted(s.inst_classes.tolist())
