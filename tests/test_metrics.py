import math
import sys

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from cosyn.evaluation.metrics import (
    DetectionAccumulator,
    PQAccumulator,
    aji,
    detection_f1,
    dice,
    multiclass_pq,
    pair_coordinates,
    pairing_radius_px,
    pq,
    remap_label,
)


def paint(boxes: dict[int, tuple[int, int, int, int]], shape: tuple[int, int] = (40, 40)) -> np.ndarray:
    """Instance map with one box per id: id -> (y0, x0, height, width)."""
    inst = np.zeros(shape, np.int32)
    for inst_id, (y0, x0, h, w) in boxes.items():
        inst[y0 : y0 + h, x0 : x0 + w] = inst_id
    return inst


def assert_pq(result, dq, sq, tp, fp, fn):
    assert (result["tp"], result["fp"], result["fn"]) == (tp, fp, fn)
    assert result["dq"] == pytest.approx(dq)
    assert result["sq"] == pytest.approx(sq)
    assert result["pq"] == pytest.approx(dq * sq)


# --- instance segmentation: dice, aji, pq ---------------------------------------------------------


def test_identical_maps_score_one_whatever_the_ids(make_disc_sample):
    true = make_disc_sample(n=12).inst_map  # ids 10, 17, 24, ...
    pred = np.where(true > 0, 100_000 - true, 0).astype(np.int32)  # same nuclei, other ids, reversed order
    assert dice(true, pred) == 1.0
    assert aji(true, pred) == 1.0
    assert_pq(pq(true, pred), dq=1, sq=1, tp=12, fp=0, fn=0)


def test_disjoint_maps_score_zero():
    true, pred = paint({1: (0, 0, 10, 10)}), paint({1: (20, 20, 10, 10)})
    assert dice(true, pred) == 0.0
    assert aji(true, pred) == 0.0  # 0 / (100 + 100)
    assert_pq(pq(true, pred), dq=0, sq=0, tp=0, fp=1, fn=1)


def test_nucleus_split_unequally():
    # A 10x20 nucleus (200 px) predicted as a 10x12 part (120 px) and a 10x8 part (80 px).
    # IoUs 120/200 = 0.6 (a TP) and 80/200 = 0.4 (a FP): DQ = 1 / (1 + 0.5) = 2/3, SQ = 0.6.
    # AJI: the true nucleus takes the 0.6 part (inter 120, union 200); the 80 px part joins the
    # union: 120 / 280 = 3/7. The foreground is unchanged, so Dice = 1.
    true = paint({7: (5, 5, 10, 20)})
    pred = paint({3: (5, 5, 10, 12), 900_000: (5, 17, 10, 8)})
    assert_pq(pq(true, pred), dq=2 / 3, sq=0.6, tp=1, fp=1, fn=0)
    assert aji(true, pred) == pytest.approx(3 / 7)
    assert dice(true, pred) == 1.0


def test_nucleus_split_in_halves_pairs_with_nothing():
    # Each 100 px half has IoU 100/200 = 0.5 exactly, not > 0.5: TP 0, FP 2, FN 1, PQ 0.
    # AJI: the true nucleus takes one half (inter 100, union 200), the other half joins the union:
    # 100 / 300 = 1/3.
    true = paint({7: (5, 5, 10, 20)})
    pred = paint({1: (5, 5, 10, 10), 2: (5, 15, 10, 10)})
    assert_pq(pq(true, pred), dq=0, sq=0, tp=0, fp=2, fn=1)
    assert aji(true, pred) == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("shift", "iou", "paired"),
    [
        (2, 80 / 120, True),  # 10x10 square moved 2 px: inter 8x10 = 80, union 200 - 80 = 120
        (4, 60 / 140, False),  # moved 4 px: inter 60, union 140, IoU 3/7 < 0.5
    ],
)
def test_shifted_square(shift, iou, paired):
    true, pred = paint({1: (10, 10, 10, 10)}), paint({2: (10, 10 + shift, 10, 10)})
    # Dice = 2 * inter / 200; AJI = inter / union whether or not PQ pairs them.
    assert dice(true, pred) == pytest.approx(2 * (100 - 10 * shift) / 200)
    assert aji(true, pred) == pytest.approx(iou)
    if paired:
        assert_pq(pq(true, pred), dq=1, sq=iou, tp=1, fp=0, fn=0)
    else:
        assert_pq(pq(true, pred), dq=0, sq=0, tp=0, fp=1, fn=1)


def test_missing_nucleus_is_a_false_negative():
    # Three 100 px squares, two predicted exactly: DQ = 2 / (2 + 0.5) = 0.8, SQ = 1.
    # AJI = 200 / (200 + 100) = 2/3 (the missed square joins the union); Dice = 400 / 500 = 0.8.
    squares = {1: (0, 0, 10, 10), 2: (0, 20, 10, 10), 3: (20, 0, 10, 10)}
    true = paint(squares)
    pred = paint({k: v for k, v in squares.items() if k != 3})
    assert_pq(pq(true, pred), dq=0.8, sq=1, tp=2, fp=0, fn=1)
    assert aji(true, pred) == pytest.approx(2 / 3)
    assert dice(true, pred) == pytest.approx(0.8)


def test_lower_match_iou_pairs_one_to_one():
    # Below 0.5 both parts of the unequal split clear the threshold (0.6 and 0.4 > 0.3), but
    # Hungarian matching gives the true nucleus only one of them, the 0.6 part.
    true = paint({7: (5, 5, 10, 20)})
    pred = paint({3: (5, 5, 10, 12), 4: (5, 17, 10, 8)})
    assert_pq(pq(true, pred, match_iou=0.3), dq=2 / 3, sq=0.6, tp=1, fp=1, fn=0)


def test_empty_maps():
    empty, one = np.zeros((20, 20), np.int32), paint({5: (0, 0, 4, 4)}, (20, 20))
    # Both empty: the reference's 0/0 for Dice and AJI, and no TP means PQ 0.
    assert math.isnan(dice(empty, empty)) and math.isnan(aji(empty, empty))
    assert_pq(pq(empty, empty), dq=0, sq=0, tp=0, fp=0, fn=0)
    # One empty: a plain miss or a plain false alarm.
    for true, pred, fp, fn in [(one, empty, 0, 1), (empty, one, 1, 0)]:
        assert dice(true, pred) == 0.0 and aji(true, pred) == 0.0
        assert_pq(pq(true, pred), dq=0, sq=0, tp=0, fp=fp, fn=fn)


def test_ids_above_uint16():
    # 4464 and 70000 are one id modulo 2**16: a uint16 cast anywhere would merge the two nuclei.
    true = paint({4464: (0, 0, 10, 10), 70_000: (20, 20, 10, 10)})
    pred = paint({2**31 - 1: (0, 0, 10, 10), 65_536: (20, 20, 10, 10)})
    assert_pq(pq(true, pred), dq=1, sq=1, tp=2, fp=0, fn=0)
    assert aji(true, pred) == 1.0
    assert np.array_equal(np.unique(remap_label(pred)), [0, 1, 2])


def test_remap_label_keeps_order_and_background():
    inst = np.array([[0, 70_000, 9], [9, 3, 0]], np.int64)
    out = remap_label(inst)
    assert out.dtype == np.int32
    assert out.tolist() == [[0, 3, 2], [2, 1, 0]]
    assert remap_label(np.array([[5, 8]])).tolist() == [[1, 2]]  # no background pixel at all


def random_nuclei(centres, radii, ids, shape=(64, 64)):
    """Discs split between overlapping neighbours by nearest centre."""
    yy, xx = np.indices(shape)
    d2 = ((yy - centres[:, 1, None, None]) ** 2 + (xx - centres[:, 0, None, None]) ** 2) / radii[:, None, None] ** 2
    return np.where(d2.min(0) <= 1, ids[d2.argmin(0)], 0).astype(np.int32)


def naive_pq_aji(true, pred):
    """The reference's definitions with one mask per pair: (tp, fp, fn, sum of paired IoU, AJI)."""
    t_ids, p_ids = [i for i in np.unique(true) if i], [i for i in np.unique(pred) if i]
    inter = np.array([[np.sum((true == t) & (pred == p)) for p in p_ids] for t in t_ids]).reshape(len(t_ids), -1)
    union = np.array([[np.sum((true == t) | (pred == p)) for p in p_ids] for t in t_ids]).reshape(len(t_ids), -1)
    iou = inter / union
    tp = int(np.sum(iou > 0.5))
    aji_inter, aji_union, taken = 0, 0, set()
    for i, t in enumerate(t_ids):
        if iou[i].max(initial=0) > 0:
            j = int(iou[i].argmax())
            aji_inter, aji_union = aji_inter + inter[i, j], aji_union + union[i, j]
            taken.add(j)
        else:
            aji_union += np.sum(true == t)
    aji_union += sum(np.sum(pred == p) for j, p in enumerate(p_ids) if j not in taken)
    return tp, len(p_ids) - tp, len(t_ids) - tp, iou[iou > 0.5].sum(), aji_inter / aji_union


@pytest.mark.parametrize("seed", range(3))
def test_agrees_with_per_pair_masks_on_crowded_maps(seed):
    rng = np.random.default_rng(seed)
    centres, radii = rng.uniform(0, 64, (25, 2)), rng.uniform(3, 7, 25)
    true = random_nuclei(centres, radii, rng.choice(10**6, 25, replace=False) + 1)
    pred = random_nuclei(
        centres[:22] + rng.normal(0, 1.5, (22, 2)), radii[:22] * rng.uniform(0.7, 1.3, 22), np.arange(22) + 1
    )
    tp, fp, fn, sum_iou, expected_aji = naive_pq_aji(true, pred)
    result = pq(true, pred)
    assert (result["tp"], result["fp"], result["fn"]) == (tp, fp, fn)
    assert result["sq"] == pytest.approx(sum_iou / tp)
    assert aji(true, pred) == pytest.approx(expected_aji)


def _crowded(n: int) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """n x n nuclei of 12x12 px, predicted 1 px off with other ids."""
    boxes = {1 + r * n + c: (r * 17, c * 17, 12, 12) for r in range(n) for c in range(n)}
    true = paint(boxes, (17 * n, 17 * n))
    pred = np.where(np.roll(true, 1, axis=1) > 0, np.roll(true, 1, axis=1) + 70_000, 0).astype(np.int32)
    return true, pred, {i: i % 5 + 1 for i in boxes}


def _python_calls(true: np.ndarray, pred: np.ndarray, classes: dict[int, int]) -> tuple[int, dict]:
    """The Python and C function calls the metrics make on one tile: a count, not a time, so the check
    below means the same on a loaded machine as on an idle one."""
    calls = 0

    def count(frame, event, arg):
        nonlocal calls
        calls += event in ("call", "c_call")

    sys.setprofile(count)
    try:
        result = pq(true, pred)
        aji(true, pred)
        multiclass_pq(true, classes, pred, {i + 70_000: c for i, c in classes.items()}, [1, 2, 3, 4, 5])
    finally:
        sys.setprofile(None)
    return calls, result


def test_the_work_does_not_grow_with_the_number_of_nuclei():
    # per-pair masks (a loop over nuclei or pairs) would make calls in proportion to the nuclei
    few, _ = _python_calls(*_crowded(5))
    many, result = _python_calls(*_crowded(15))  # 225 nuclei on a 255² tile
    assert result["tp"] == 225 and result["sq"] == pytest.approx(132 / 156)  # inter 12x11, union 288 - 132
    assert many <= 1.2 * few, (few, many)

def two_images():
    """Image A: class-1 square right, class-2 square predicted as class 1. Image B: a class-2
    square shifted 2 px (IoU 2/3), plus a class-1 false positive where B has no nucleus."""
    a_true, a_pred = paint({5: (2, 2, 10, 10), 9: (2, 20, 10, 10)}), paint({100: (2, 2, 10, 10), 200: (2, 20, 10, 10)})
    b_true, b_pred = paint({70_000: (20, 20, 10, 10)}), paint({3: (20, 22, 10, 10), 4: (2, 2, 10, 10)})
    return [
        (a_true, {5: 1, 9: 2}, a_pred, {100: 1, 200: 1}),
        (b_true, {70_000: 2}, b_pred, {3: 2, 4: 1}),
    ]


def test_multiclass_pq_per_image():
    (a, b), classes = two_images(), [1, 2, 3]
    # A, class 1: TP 1 (IoU 1), FP 1 (the mistyped square): DQ 2/3, PQ 2/3. Class 2: FN 1, PQ 0.
    # Class 3 is absent: nan, out of the mean. mPQ = (2/3 + 0) / 2 = 1/3.
    result = multiclass_pq(*a, classes)
    assert_pq(result["per_class"][1], dq=2 / 3, sq=1, tp=1, fp=1, fn=0)
    assert_pq(result["per_class"][2], dq=0, sq=0, tp=0, fp=0, fn=1)
    assert math.isnan(result["per_class"][3]["pq"])
    assert result["mpq"] == pytest.approx(1 / 3)
    # B, class 2: TP 1 with IoU 2/3, PQ 2/3. Class 1 is absent from the truth: nan although it
    # has a FP (PanNuke), so mPQ = 2/3.
    result = multiclass_pq(*b, classes)
    assert_pq(result["per_class"][2], dq=1, sq=2 / 3, tp=1, fp=0, fn=0)
    assert math.isnan(result["per_class"][1]["pq"]) and result["per_class"][1]["fp"] == 1
    assert result["mpq"] == pytest.approx(2 / 3)


def test_pq_accumulator_sums_counts_over_images():
    acc = PQAccumulator([1, 2, 3])
    per_image = [acc.add(*image)["mpq"] for image in two_images()]
    assert np.mean(per_image) == pytest.approx(1 / 2)  # (1/3 + 2/3) / 2
    # Summed: class 1 TP 1, FP 2, FN 0, IoU sum 1 -> DQ 1 / (1 + 1) = 1/2, SQ 1, PQ 1/2.
    # Class 2 TP 1, FP 0, FN 1, IoU sum 2/3 -> DQ 2/3, SQ 2/3, PQ 4/9. Class 3 never seen: nan.
    # mPQ+ = (1/2 + 4/9) / 2 = 17/36.
    result = acc.result()
    assert_pq(result["per_class"][1], dq=1 / 2, sq=1, tp=1, fp=2, fn=0)
    assert_pq(result["per_class"][2], dq=2 / 3, sq=2 / 3, tp=1, fp=0, fn=1)
    assert math.isnan(result["per_class"][3]["pq"])
    assert result["mpq_plus"] == pytest.approx(17 / 36)


def test_multiclass_pq_needs_a_class_for_every_instance():
    inst = paint({1: (0, 0, 5, 5), 2: (10, 10, 5, 5)})
    with pytest.raises(ValueError, match="without a class"):
        multiclass_pq(inst, {1: 1}, inst, {1: 1, 2: 1}, [1])


# --- detection and classification -------------------------------------------------------------------


def test_pairing_radius_scales_with_resolution():
    assert pairing_radius_px(0.25) == pytest.approx(12.0)  # HoVer-Net's 12 px at 40x
    assert pairing_radius_px(0.5) == pytest.approx(6.0)
    assert pairing_radius_px(0.5, radius_um=4.0) == pytest.approx(8.0)


def test_pairing_radius_is_respected():
    true = np.array([[0.0, 0.0], [50.0, 50.0], [100.0, 0.0]])
    pred = np.array([[12.0, 0.0], [50.0, 62.1], [100.0, 11.9]])  # 12 (inclusive), 12.1, 11.9 px
    pairs, unpaired_true, unpaired_pred = pair_coordinates(true, pred, 12.0)
    assert pairs.tolist() == [[0, 0], [2, 2]]
    assert unpaired_true.tolist() == [1] and unpaired_pred.tolist() == [1]


def test_pairing_keeps_every_pair_within_the_radius():
    # true (0, 0), (51, 0); pred (11, 0), (-13, 0). Assigning on raw distances picks the crossed
    # pairs (13 + 40 = 53 < 11 + 64 = 75), both beyond 12 px, and pairs nothing; the within-radius
    # pair (0, 0)-(11, 0) must survive.
    true, pred = np.array([[0.0, 0.0], [51.0, 0.0]]), np.array([[11.0, 0.0], [-13.0, 0.0]])
    assert linear_sum_assignment(cdist(true, pred))[1].tolist() == [1, 0]
    pairs, unpaired_true, unpaired_pred = pair_coordinates(true, pred, 12.0)
    assert pairs.tolist() == [[0, 0]]
    assert unpaired_true.tolist() == [1] and unpaired_pred.tolist() == [1]


def test_class_swap_keeps_detection_and_costs_type_f1():
    xy = np.array([[10.0, 10.0], [30.0, 10.0], [50.0, 10.0], [70.0, 10.0]])
    # Full swap: every nucleus found, none typed right. F1_c = 2*0 / (0 + 2 FP_c + 2 FN_c) = 0.
    result = detection_f1(xy[:2], [1, 2], xy[:2] + 1, [2, 1], 12.0, [1, 2])
    assert result["f1_d"] == 1.0 and result["acc"] == 0.0
    assert result["f1_c"] == {1: 0.0, 2: 0.0}
    # Truth 1, 1, 2, 2 (+ a class-1 nucleus nobody found); prediction 1, 2, 2, 1.
    # Detection: TP 4, FP 0, FN 1 -> F1_d = 8 / 9, precision 1, recall 4/5; acc = 2/4.
    # Class 1: TP_c 1, FN_c 1 (1->2), FP_c 1 (2->1), FN_d 1 -> F1_1 = 2 / (2 + 2 + 2 + 1) = 2/7.
    # (Counting the paired 2->2 nucleus as a TN_c would give 4 / 9: the reference does not.)
    # Class 2: TP_c 1, FP_c 1, FN_c 1 -> F1_2 = 2 / 6 = 1/3.
    true_xy = np.vstack([xy, [[200.0, 200.0]]])
    result = detection_f1(true_xy, [1, 1, 2, 2, 1], xy + 0.5, [1, 2, 2, 1], 12.0, [1, 2, 3])
    assert result["f1_d"] == pytest.approx(8 / 9)
    assert result["precision_d"] == 1.0 and result["recall_d"] == pytest.approx(0.8)
    assert result["acc"] == pytest.approx(0.5)
    assert result["f1_c"][1] == pytest.approx(2 / 7)
    assert result["f1_c"][2] == pytest.approx(1 / 3)
    assert math.isnan(result["f1_c"][3])  # no nucleus of class 3 anywhere


def test_detection_with_no_nuclei():
    none = np.zeros((0, 2))
    result = detection_f1(none, [], none, [], 12.0, [1])
    assert (result["f1_d"], result["precision_d"], result["recall_d"], result["acc"]) == (0.0, 0.0, 0.0, 0.0)
    assert math.isnan(result["f1_c"][1])
    result = detection_f1(np.array([[5.0, 5.0]]), [1], none, [], 12.0, [1])
    assert result["fn_d"] == 1 and result["f1_d"] == 0.0 and result["f1_c"][1] == 0.0


def test_detection_accumulator_pairs_within_images_only():
    # Image 1: one nucleus found. Image 2: a prediction where image 1 (not image 2) has a nucleus,
    # so it is a FP, not a pair. Pooled: TP 1, FP 1, FN 0 -> F1_d = 2 / 3.
    acc = DetectionAccumulator(12.0, [1])
    acc.add(np.array([[10.0, 10.0]]), [1], np.array([[11.0, 10.0]]), [1])
    acc.add(np.zeros((0, 2)), [], np.array([[10.0, 10.0]]), [1])
    result = acc.result()
    assert (result["tp_d"], result["fp_d"], result["fn_d"]) == (1, 1, 0)
    assert result["f1_d"] == pytest.approx(2 / 3)
    assert result["f1_c"][1] == pytest.approx(2 / 3)  # 2 / (2 + FP_d 1)


def test_each_centroid_needs_a_class():
    with pytest.raises(ValueError, match="one class"):
        detection_f1(np.zeros((2, 2)), [1], np.zeros((0, 2)), [], 12.0, [1])
