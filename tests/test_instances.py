import numpy as np
import pytest
from scipy import ndimage as ndi

from cosyn.core.instances import cut_instances


def disc_scene(shape, centres, radii, classes):
    """Discs split between overlapping neighbours by nearest centre, with CoSyn's distance
    map: per instance, the distance transform normalised to 1 at the centre, 0 outside."""
    rr, cc = np.indices(shape)
    d2 = np.stack([((rr - y) ** 2 + (cc - x) ** 2) / r**2 for (x, y), r in zip(centres, radii, strict=True)])
    inst = np.where(d2.min(0) <= 1, d2.argmin(0) + 1, 0).astype(np.int32)
    dist = np.zeros(shape, np.float32)
    for k in range(1, len(centres) + 1):
        e = ndi.distance_transform_edt(inst == k)
        dist += (e / e.max()).astype(np.float32)
    class_map = np.concatenate([[0], classes]).astype(np.uint8)[inst]
    return inst, dist, class_map


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


CENTRES = [(20, 30), (36, 30), (70, 70)]  # the first two overlap: one foreground blob


@pytest.fixture
def scene():
    return disc_scene((100, 100), CENTRES, [10, 10, 8], [3, 2, 1])


def test_touching_discs_split_at_their_centroids(scene):
    inst, dist, class_map = scene
    assert ndi.label(class_map > 0)[1] == 2  # connected components would merge the pair
    res = cut_instances(dist, class_map, np.array(CENTRES, float), np.array([3, 2, 1]))
    assert res.inst_map.dtype == np.int32
    assert res.num_instances == 3 and res.missed == [] and res.unprompted == 0
    assert res.point_inst.tolist() == [1, 2, 3]
    for k in (1, 2, 3):
        assert iou(res.inst_map == k, inst == k) > 0.9
    assert res.inst_classes == {1: 3, 2: 2, 3: 1}


def test_far_background_centroid_is_missed_but_a_near_one_snaps(scene):
    inst, dist, class_map = scene
    pts = np.array(CENTRES + [(90, 10), (70, 79.4)], float)  # far away; 1.4 px below disc 3's edge
    res = cut_instances(dist, class_map, pts)
    assert res.missed == [3]
    assert res.point_inst[3] == 0
    assert res.point_inst[4] == 4 and res.num_instances == 4  # disc 3 now holds two markers


def test_duplicate_centroid_gives_one_instance(scene):
    _, dist, class_map = scene
    pts = np.array(CENTRES + [CENTRES[2]], float)
    res = cut_instances(dist, class_map, pts)
    assert res.missed == [3] and res.point_inst.tolist() == [1, 2, 3, 3]


def test_majority_class_and_fallbacks(scene):
    inst, dist, class_map = scene
    class_map = class_map.copy()
    class_map[(inst == 1) & (np.indices(inst.shape)[1] < 15)] = 2  # a minority of disc 1 disagrees
    class_map[inst == 3] = 0  # disc 3 only in the distance map
    pts = np.array(CENTRES, float)
    res = cut_instances(dist, class_map, pts, np.array([3, 2, 4]))
    assert res.inst_classes[1] == 3
    assert res.inst_classes[3] == 4  # the centroid's class
    # foreground = label OR confident distance
    assert iou(res.inst_map == 3, (inst == 3) & (dist > 0.3)) == 1.0
    without_point_classes = cut_instances(dist, class_map, pts)
    assert without_point_classes.inst_classes[3] in (2, 3)  # the nearest labelled pixels'


def test_unprompted_nuclei_are_kept_after_the_prompted_and_specks_dropped(scene):
    inst, dist, class_map = scene
    class_map = class_map.copy()
    class_map[90:92, 90:92] = 1  # a 4 px speck
    res = cut_instances(dist, class_map, np.array(CENTRES[:2], float))
    assert res.unprompted == 1 and res.num_instances == 3
    assert iou(res.inst_map == 3, inst == 3) > 0.9
    assert res.inst_map[90:92, 90:92].max() == 0


def test_without_layout_distance_peaks_split_touching_discs(scene):
    inst, dist, class_map = scene
    res = cut_instances(dist, class_map, None)
    assert res.num_instances == 3 and res.unprompted == 3 and res.missed == []
    for k in (1, 2, 3):
        best = max(iou(res.inst_map == j, inst == k) for j in range(1, 4))
        assert best > 0.85


def test_empty_maps_and_bad_input():
    z = np.zeros((16, 16), np.float32)
    res = cut_instances(z, z.astype(np.uint8), np.array([[3.0, 3.0]]))
    assert res.num_instances == 0 and res.missed == [0] and res.inst_map.max() == 0
    with pytest.raises(ValueError, match="outside"):
        cut_instances(z, z.astype(np.uint8), np.array([[16.0, 3.0]]))
    with pytest.raises(ValueError, match="shapes"):
        cut_instances(z, np.zeros((8, 8), np.uint8))


def test_more_than_65535_instances():
    # Plus-shaped 5 px nuclei on a 4 px grid: 260 x 260 = 67600 instances.
    n, step = 260, 4
    size = n * step
    dist = np.zeros((size, size), np.float32)
    centre = np.zeros((size, size), bool)
    centre[1::step, 1::step] = True
    dist[centre] = 1.0
    arms = ndi.binary_dilation(centre, ndi.generate_binary_structure(2, 1)) & ~centre
    dist[arms] = 0.5
    class_map = ((dist > 0) * 2).astype(np.uint8)
    rows, cols = np.nonzero(centre)
    res = cut_instances(dist, class_map, np.stack([cols, rows], 1).astype(float))
    assert res.inst_map.dtype == np.int32 and res.num_instances == n * n
    assert np.array_equal(res.inst_map[rows, cols], np.arange(1, n * n + 1))
    assert np.bincount(res.inst_map.ravel())[1:].tolist() == [5] * (n * n)
