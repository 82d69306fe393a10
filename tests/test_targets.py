"""Conditioning targets and the training Dataset on fixtures with known answers."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from conftest import disc_sample

from cosyn.core.classes import CONSEP
from cosyn.core.layout import Layout, Point
from cosyn.core.maps import distance_map, point_map
from cosyn.core.resample import resample_instances
from cosyn.data.dataset import CropDataset, PositionSampler, dihedral, prepare_tile, split_by_source
from cosyn.data.targets import layout_from_sample, structure_prompt
from cosyn.model.points import point_heatmaps

NAMES = CONSEP.to_list()


def test_point_map_puts_class_ids_at_centroid_pixels():
    pm = point_map(np.array([[3.2, 5.9], [10.0, 1.0], [6.49, 0.51]]), np.array([3, 1, 2]), 12, 16)
    assert pm.shape == (12, 16) and pm.dtype == np.uint8
    assert pm[6, 3] == 3 and pm[1, 10] == 1 and pm[1, 6] == 2 and pm.sum() == 6  # nearest pixel centre


def test_point_heatmaps_peak_one_per_class_channel():
    points = torch.zeros(1, 21, 21, dtype=torch.long)
    points[0, 10, 10] = 2
    h = point_heatmaps(points, 5, sigma=2.0)
    assert h.shape == (1, 4, 21, 21)
    assert h[0, 1, 10, 10] == pytest.approx(1.0)
    assert h[0, 1, 10, 12] == pytest.approx(np.exp(-4 / 8), rel=1e-5)  # Gaussian fall-off with σ = 2
    assert h[0, [0, 2, 3]].abs().max() == 0


def test_distance_map_is_one_at_centre_positive_inside_zero_outside():
    s = disc_sample(n=4, size=(40, 40), radius=5)
    d = distance_map(s.inst_map)
    assert d.dtype == np.float32
    assert np.all(d[s.inst_map == 0] == 0) and np.all(d[s.inst_map > 0] > 0)
    for (x, y) in s.centroids.astype(int):
        assert d[y, x] == pytest.approx(1.0)
    # boundary pixels of a radius-5 disc sit at 1/5 of the centre value
    edge_x, edge_y = int(s.centroids[0, 0]) + 5, int(s.centroids[0, 1])
    assert d[edge_y, edge_x] == pytest.approx(1 / 5, abs=0.05)


def test_distance_map_separates_touching_nuclei():
    inst = np.zeros((10, 20), np.int32)
    inst[2:8, 2:10] = 70000  # ids beyond uint16
    inst[2:8, 10:18] = 5
    d = distance_map(inst)
    assert d[4, 9] < 0.5 and d[4, 10] < 0.5  # both sides of the shared border are low
    assert d[4:6, 5:7].max() == pytest.approx(1.0) and d[4:6, 13:15].max() == pytest.approx(1.0)


def test_structure_prompt_template_density_and_dominant_class():
    dense = Layout(256, 256, NAMES, [Point(5 + i % 50 * 5, 5 + i // 50 * 5, "epithelial") for i in range(90)]
                   + [Point(200, 200, "inflammatory")], mpp=0.25, tissue="colon")
    text = structure_prompt(dense)
    assert text.startswith("high quality histopathology colon tissue image including nuclei types of "
                           "epithelial and inflammatory")
    assert "densely packed nuclei" in text and "mostly epithelial" in text
    empty = Layout(256, 256, NAMES, [], mpp=0.25, tissue="colon")
    assert structure_prompt(empty) == "high quality histopathology colon tissue image with no nucleus"
    sparse = Layout(256, 256, NAMES, [Point(10, 10, "spindle"), Point(100, 100, "other")], mpp=0.25)
    assert "sparse nuclei" in structure_prompt(sparse) and "spindle-shaped" in structure_prompt(sparse)
    orders = {structure_prompt(dense, rng=random.Random(i)).split(" of ")[1].split(",")[0] for i in range(20)}
    assert orders == {"epithelial and inflammatory", "inflammatory and epithelial"}  # shuffled for training


def test_layout_from_sample_round_trips_centroids_and_classes():
    s = disc_sample(n=6)
    lay = layout_from_sample(s)
    assert np.allclose(lay.xy(), s.centroids) and np.array_equal(lay.class_ids(), s.inst_classes)
    assert lay.mpp == 0.25 and lay.tissue == "colon"


def test_prepare_tile_rescales_to_target_mpp():
    s = disc_sample(n=4, size=(40, 60), radius=6)
    t = prepare_tile(s, 0.5)
    assert t.image.shape == (20, 30, 3) and t.class_map.shape == (20, 30) and t.dist.shape == (20, 30)
    rows, cols = np.nonzero(t.points)
    assert len(rows) == 4
    assert np.allclose(sorted(cols), sorted(np.floor((s.centroids[:, 0] + 0.5) / 2 - 0.5)), atol=1)
    assert np.all(t.class_map[rows, cols] == t.points[rows, cols])  # each point lands on its own nucleus


def test_resampled_instances_keep_large_ids():
    arr = np.full((4, 4), 2**20 + 3, np.int32)
    assert resample_instances(arr, 2, 2).max() == 2**20 + 3


def test_crop_dataset_applies_one_transform_to_all_targets_and_is_seeded():
    tiles = [prepare_tile(disc_sample(n=9, size=(48, 48), radius=4, name=f"t{i}_000", seed=i), None)
             for i in range(3)]
    ds = CropDataset(tiles, CONSEP, crop=32, mpp=0.25, seed=1)
    for pos in range(12):
        item = ds[pos]
        cls, pts, dist = item["class_map"].numpy(), item["points"].numpy(), item["dist"][0].numpy()
        assert item["image"].shape == (3, 32, 32)
        assert np.array_equal(cls > 0, dist > 0)  # label and distance map moved together
        assert np.all(cls[pts > 0] == pts[pts > 0])  # points still sit on nuclei of their class
    a, b = ds[5], ds[5]
    assert torch.equal(a["image"], b["image"]) and a["prompt"] == b["prompt"]
    # every tile once per epoch
    assert sorted(ds.tile_index(p) for p in range(3)) == [0, 1, 2]


def test_dihedral_gives_eight_distinct_transforms():
    x = np.arange(9).reshape(3, 3)
    assert len({dihedral(x, k).tobytes() for k in range(8)}) == 8


def test_position_sampler_shards_disjointly():
    take = lambda s, n: [next(it) for it in [iter(s)] for _ in range(n)]  # noqa: E731
    r0, r1 = take(PositionSampler(5, 0, 2), 4), take(PositionSampler(5, 1, 2), 4)
    assert r0 == [10, 12, 14, 16] and r1 == [11, 13, 15, 17]


def test_split_by_source_never_splits_a_source():
    samples = [disc_sample(n=2, name=f"tile{t}_{k:03d}") for t in range(10) for k in range(3)]
    train, val = split_by_source(samples, 0.2, seed=0)
    src = lambda idx: {samples[i].source for i in idx}  # noqa: E731
    assert len(src(val)) == 2 and not src(train) & src(val)
    assert len(train) + len(val) == 30
