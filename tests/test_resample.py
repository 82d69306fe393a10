"""One resampling rule per map kind (cosyn.core.resample), each checked on a map where it shows."""

from __future__ import annotations

import numpy as np

from cosyn.core import resample
from cosyn.core.classes import CONSEP
from cosyn.core.instances import cut_instances
from cosyn.core.layout import Layout, Point
from cosyn.core.maps import distance_map
from cosyn.core.resample import at_mpp, resample_distance, resample_image, resample_instances, resample_labels
from cosyn.core.triple import Triple


def test_an_image_shrinks_by_area_and_grows_bicubic():
    checker = np.kron(np.indices((4, 4)).sum(0) % 2, np.ones((2, 2))).astype(np.uint8) * 200
    small = resample_image(np.repeat(checker[..., None], 3, 2), 4, 4)
    assert np.array_equal(small[..., 0], checker[::2, ::2])  # each 2x2 block is one value: its mean
    stripes = np.zeros((8, 8, 3), np.uint8)
    stripes[:, ::2] = 255
    assert (resample_image(stripes, 4, 4) == 128).all()  # area: the mean, not a sample of one column
    ramp = np.repeat(np.linspace(0, 240, 8, dtype=np.uint8)[None, :, None], 3, 2).repeat(8, 0)
    big = resample_image(ramp, 16, 16)[8, :, 0].astype(int)
    assert len(set(big.tolist())) > 8 and (np.diff(big[2:-2]) >= 0).all()  # smooth: new values in between


def test_labels_shrink_nearest_and_grow_from_their_class_probabilities():
    ids = np.array([[0, 7], [3, 2**20]], np.int32)
    assert resample_instances(ids, 2, 2).max() == 2**20  # ids of any size survive
    labels = np.zeros((8, 8), np.uint8)
    labels[2:6, 2:6] = 3
    small = resample_labels(labels, 4, 4)
    assert set(np.unique(small)) <= {0, 3} and np.array_equal(small, labels[::2, ::2])
    # a 2x2 square grown 4x: nearest would give an 8x8 block with square corners; the probabilities round them
    square = np.zeros((4, 4), np.uint8)
    square[1:3, 1:3] = 2
    big = resample_labels(square, 16, 16)
    assert big.dtype == np.uint8 and set(np.unique(big)) == {0, 2}
    assert big[4, 4] == 0 and big[8, 8] == 2 and (big == 2).sum() < (resample_instances(square, 16, 16) == 2).sum()


def test_distance_is_bilinear():
    dist = np.array([[0.0, 1.0]], np.float32).repeat(2, 0)
    assert np.allclose(resample_distance(dist, 2, 4)[0], [0, 0.25, 0.75, 1])


def _triple() -> Triple:
    inst = np.zeros((32, 32), np.int32)
    yy, xx = np.indices((32, 32))
    points = [Point(8, 8, "epithelial"), Point(22, 20, "inflammatory")]
    for k, p in enumerate(points, 1):
        inst[(xx - p.x) ** 2 + (yy - p.y) ** 2 <= 16] = k
    class_map = np.select([inst == 1, inst == 2], [3, 2], 0).astype(np.uint8)
    image = np.full((32, 32, 3), 200, np.uint8)
    layout = Layout(32, 32, CONSEP.to_list(), points, mpp=0.5)
    return Triple(image, class_map, inst, distance_map(inst), {1: 3, 2: 2}, layout, {"stages": ["base"]})


def test_a_triples_instances_are_cut_once_at_the_new_resolution(monkeypatch):
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return cut_instances(*args, **kwargs)

    monkeypatch.setattr(resample, "cut_instances", counted)
    out = at_mpp(_triple(), 0.25)
    assert calls == [(64, 64)]  # once, at the output resolution
    assert out.layout.mpp == 0.25 and out.image.shape == (64, 64, 3) and out.params["output_mpp"] == 0.25
    expected = cut_instances(out.dist_map, out.class_map, out.layout.xy(), out.layout.class_ids())
    assert np.array_equal(out.inst_map, expected.inst_map) and out.inst_classes == {1: 3, 2: 2}
    assert out.params["missed_centroids"] == 0
    same = at_mpp(_triple(), 0.5)  # already there: nothing resampled, nothing cut
    assert len(calls) == 1 and same.image.shape == (32, 32, 3)
    exact = at_mpp(_triple(), 0.25, size=(60, 66))  # an exact canvas when the caller needs one
    assert exact.image.shape == (60, 66, 3) and exact.inst_map.shape == (60, 66)
