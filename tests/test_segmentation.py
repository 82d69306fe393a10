"""The HoVer-style segmenter (cosyn.segmentation): targets, post-processing, learning, persistence, resume."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import disc_sample

from cosyn.core.classes import CONSEP
from cosyn.data.dataset import dihedral
from cosyn.evaluation.segmenter import Truth, score
from cosyn.segmentation import Segmenter, SegmenterConfig, SegTile, SegTrainConfig, train_segmenter
from cosyn.segmentation.config import SegmenterConfig as Config
from cosyn.segmentation.postprocess import instance_map
from cosyn.segmentation.targets import dihedral_hv, hv_maps
from cosyn.segmentation.train import PROGRESS_JSON, PROGRESS_WEIGHTS

MPP = 0.25  # the disc fixtures' own resolution
TINY = {"backbone": "resnet10", "decoder_channels": (32, 16, 16, 8, 8)}
RUN = SegTrainConfig(steps=80, batch=4, crop=64, lr=3e-3, warmup=5)


def _discs(seed: int, name: str):
    return disc_sample(n=25, size=(64, 64), radius=4, name=name, seed=seed)


def _touching_pair() -> np.ndarray:
    """Two discs of radius 7 whose borders touch along a column: one foreground blob, two nuclei."""
    yy, xx = np.indices((48, 64))
    inst = np.zeros((48, 64), np.int32)
    inst[(yy - 24) ** 2 + (xx - 24) ** 2 <= 49] = 1
    inst[((yy - 24) ** 2 + (xx - 38) ** 2 <= 49) & (inst == 0)] = 2
    return inst


@pytest.fixture(scope="module")
def trained() -> Segmenter:
    tiles = [SegTile.from_sample(_discs(i, f"t{i}_000"), MPP) for i in range(4)]
    return train_segmenter(tiles, SegmenterConfig(CONSEP.to_list(), mpp=MPP, **TINY), RUN, progress=False)


@pytest.mark.parametrize("k", range(8))
def test_hv_targets_turn_with_the_crop(k):
    inst = _touching_pair()
    np.testing.assert_allclose(hv_maps(dihedral(inst, k)), dihedral_hv(hv_maps(inst), k), atol=1e-6)


def test_hv_targets_point_away_from_each_centroid():
    hv = hv_maps(_touching_pair())
    assert hv[24, 17, 0] == -1 and hv[24, 31, 0] == 1  # the left disc's leftmost and rightmost pixels
    assert hv[17, 24, 1] == -1 and hv[24, 24].tolist() == [0, 0]
    assert np.all(hv[0, 0] == 0)  # background


def test_post_processing_splits_touching_nuclei_from_perfect_maps():
    inst = _touching_pair()
    logits = np.stack([(inst == 0) * 4.0 - 2, (inst > 0) * 4.0 - 2]).astype(np.float32)
    out = instance_map(logits, hv_maps(inst).transpose(2, 0, 1), Config(CONSEP.to_list(), mpp=MPP))
    assert out.max() == 2  # one foreground blob, two instances
    for i in (1, 2):
        overlap = np.bincount(out[inst == i], minlength=3)[1:]
        assert overlap.max() / (inst == i).sum() > 0.9


def test_learns_to_segment_discs(trained):
    truths = [Truth.from_sample(_discs(10 + i, f"v{i}_000")) for i in range(2)]
    result = score(trained, truths)
    assert result["pq"] > 0.6, result
    assert result["dice"] > 0.8, result
    untrained = score(Segmenter.new(trained.config, seed=1), truths)
    assert untrained["pq"] < 0.2 < result["pq"] - untrained["pq"]  # the yardstick ranks a known-bad model


def test_save_load_roundtrip_and_mismatched_weights(trained, tmp_path):
    trained.save(tmp_path / "seg")
    loaded = Segmenter.load(tmp_path / "seg")
    image = _discs(20, "x_000").image
    np.testing.assert_array_equal(trained.predict(image).inst_map, loaded.predict(image).inst_map)
    assert loaded.config == trained.config and loaded.train_info["steps"] == RUN.steps
    Segmenter.new(SegmenterConfig(CONSEP.to_list(), mpp=MPP, backbone="resnet10")).save(tmp_path / "other")
    (tmp_path / "other" / "segmenter.safetensors").replace(tmp_path / "seg" / "segmenter.safetensors")
    with pytest.raises(ValueError, match="segmenter.safetensors: weights do not match"):
        Segmenter.load(tmp_path / "seg")


class _Interrupted(Exception):
    pass


class _StopAfter(list):
    """Training tiles that raise once `limit` crops were read: an interrupted run."""

    def __init__(self, tiles: list[SegTile], limit: int) -> None:
        super().__init__(tiles)
        self.reads, self.limit = 0, limit

    def __getitem__(self, i):
        self.reads += 1
        if self.reads > self.limit:
            raise _Interrupted
        return super().__getitem__(i)


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path):
    tiles = [SegTile.from_sample(_discs(i, f"t{i}_000"), MPP) for i in range(2)]
    cfg = SegmenterConfig(CONSEP.to_list(), mpp=MPP, **TINY)
    run = SegTrainConfig(steps=6, batch=2, crop=32, warmup=2, save_every=2)
    straight = train_segmenter(tiles, cfg, run, progress=False)
    with pytest.raises(_Interrupted):
        train_segmenter(_StopAfter(tiles, limit=5 * run.batch), cfg, run, folder=tmp_path, progress=False)
    assert (tmp_path / PROGRESS_JSON).is_file()  # saved at step 4
    resumed = train_segmenter(tiles, cfg, run, folder=tmp_path, progress=False)
    for (name, a), b in zip(straight.net.state_dict().items(), resumed.net.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not (tmp_path / PROGRESS_WEIGHTS).exists() and Segmenter.load(tmp_path).train_info["steps"] == 6
    assert resumed.train_info["loss_per_100_steps"] == straight.train_info["loss_per_100_steps"]  # the whole curve
    with pytest.raises(ValueError, match="other settings"):
        (tmp_path / PROGRESS_JSON).write_text('{"step": 2, "settings": {}, "losses": [], "seconds": 0}')
        (tmp_path / PROGRESS_WEIGHTS).write_bytes((tmp_path / "segmenter.safetensors").read_bytes())
        train_segmenter(tiles, cfg, run, folder=tmp_path, progress=False)


def test_keep_unmarked_turns_a_blob_without_marker_into_a_nucleus():
    inst = _touching_pair()
    hv = hv_maps(inst).transpose(2, 0, 1)
    yy, xx = np.indices(inst.shape)
    blob = (yy - 38) ** 2 + (xx - 56) ** 2 <= 12  # 37 px: above the 10 px minimum, too small for a marker
    hv[:, blob] = np.where((yy + xx)[blob] % 2, 1.0, -1.0)  # a checkerboard: high Sobel energy everywhere
    fg = (inst > 0) | blob
    logits = np.stack([~fg * 4.0 - 2, fg * 4.0 - 2]).astype(np.float32)
    config = Config(CONSEP.to_list(), mpp=MPP)
    dropped = instance_map(logits, hv, config)
    kept = instance_map(logits, hv, replace(config, keep_unmarked=True))
    assert dropped.max() == 2 and not dropped[blob].any()
    assert kept.max() == 3 and np.all(kept[blob] == kept[38, 56]) and kept[38, 56] > 0
