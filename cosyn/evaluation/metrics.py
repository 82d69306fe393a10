"""Nuclei segmentation, detection and classification metrics, computed the way the field computes them.

The definitions are HoVer-Net's reference evaluation (Graham et al. 2019, vqdang/hover_net
`metrics/stats_utils.py` and `compute_stats.py`), with per-image multi-class PQ as PanNuke
evaluates it (Gamper et al. 2020) and the dataset-level mPQ+ of the CoNIC challenge (Graham et
al. 2021, TissueImageAnalytics/CoNIC `compute_stats.py`):

- `dice`: binary Dice of the foreground (`get_dice_1`).
- `aji`: Aggregated Jaccard Index, the MoNuSeg version (`get_fast_aji`).
- `pq`: detection quality, segmentation quality and panoptic quality (`get_fast_pq`).
- `multiclass_pq`: one image's per-class PQ and their mean, mPQ (PanNuke).
- `PQAccumulator`: per-class TP/FP/FN/IoU summed over a data set, then mPQ+ (CoNIC).
- `detection_f1`, `DetectionAccumulator`: centroid detection F1 and HoVer-Net's type F1
  (`run_nuclei_type_stat`), on one image or pooled over a data set.

Instance maps are integer arrays, 0 = background, with any ids: non-contiguous and above 65535
are fine, so no `remap_label` is needed beforehand. The overlap of every (true, pred) pair comes
from one bincount over the pixels instead of the reference's one mask per pair, so a 256x256 tile
with 200 nuclei takes milliseconds.

Empty inputs, following the reference in each case:

- `dice`, `aji`: nan when both maps are empty (the reference's 0/0); 0 when only one is.
- `pq`: DQ = SQ = PQ = 0 without a true positive, empty maps included (CoNIC's epsilon; the
  original HoVer-Net raises ZeroDivisionError on two empty maps). TP/FP/FN tell the cases apart.
- `multiclass_pq`: a class absent from the ground truth has nan scores and stays out of mPQ
  (PanNuke), even when it has false positives; mPQ is nan when no class is present.
- `PQAccumulator`: a class absent from every true and predicted map has nan scores and stays out
  of mPQ+ (CoNIC scores it 0, which only matters for small sets lacking a class).
- Detection: F1_d, precision, recall and accuracy are 0 when their denominator is (nothing
  paired); F1_c is nan for a class absent from both true and predicted nuclei.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

MATCH_IOU = 0.5
RADIUS_UM = 3.0  # HoVer-Net's 12 px at 0.25 µm/px


def remap_label(inst: np.ndarray) -> np.ndarray:
    """Instance ids renumbered 1..N in ascending order of the old ids; 0 stays background.

    HoVer-Net's `remap_label(by_size=False)`. Returns int32.
    """
    ids, inverse = np.unique(inst, return_inverse=True)
    if ids.size and ids[0] != 0:  # no background pixel: the smallest id must become 1, not 0
        inverse = inverse + 1
    return inverse.reshape(inst.shape).astype(np.int32)


@dataclass
class _Overlap:
    """Pixel counts of every (true, pred) instance pair, instances in ascending id order."""

    inter: np.ndarray  # (N, M)
    true_area: np.ndarray  # (N,)
    pred_area: np.ndarray  # (M,)

    @property
    def union(self) -> np.ndarray:
        return self.true_area[:, None] + self.pred_area[None, :] - self.inter

    @property
    def iou(self) -> np.ndarray:
        return self.inter / self.union  # every union holds a whole true nucleus, so > 0


def _overlap(true_inst: np.ndarray, pred_inst: np.ndarray) -> _Overlap:
    """One bincount over the (true, pred) label pairs of all pixels gives the joint histogram;
    its background row and column give the areas their overlaps with background."""
    if true_inst.shape != pred_inst.shape:
        raise ValueError(f"true {true_inst.shape} and pred {pred_inst.shape} differ in shape")
    t = remap_label(true_inst).ravel().astype(np.int64)
    p = remap_label(pred_inst).ravel().astype(np.int64)
    n, m = int(t.max(initial=0)), int(p.max(initial=0))
    joint = np.bincount(t * (m + 1) + p, minlength=(n + 1) * (m + 1)).reshape(n + 1, m + 1)
    return _Overlap(joint[1:, 1:], joint[1:].sum(1), joint[:, 1:].sum(0))


def dice(true: np.ndarray, pred: np.ndarray) -> float:
    """Binary Dice of the foregrounds, 2|T ∩ P| / (|T| + |P|), HoVer-Net's `get_dice_1`.

    Takes instance maps or masks (anything > 0 is foreground); nan when both are empty.
    """
    t, p = np.asarray(true) > 0, np.asarray(pred) > 0
    total = int(t.sum()) + int(p.sum())
    return 2.0 * int((t & p).sum()) / total if total else float("nan")


def aji(true_inst: np.ndarray, pred_inst: np.ndarray) -> float:
    """Aggregated Jaccard Index (Kumar et al. 2017), HoVer-Net's `get_fast_aji`.

    Each true nucleus takes the prediction of highest IoU; a prediction may be taken by several,
    the known over-penalisation of AJI that AJI+ removes. AJI is the sum of the paired
    intersections over the sum of the paired unions plus the areas of the true nuclei that overlap
    no prediction and of the predictions that no true nucleus took. nan when both maps are empty.
    """
    ov = _overlap(true_inst, pred_inst)
    # A background column of IoU 0 first: argmax lands on it only when a row overlaps nothing,
    # and otherwise breaks ties to the lowest pred id, as np.argmax does in the reference.
    best = np.column_stack([np.zeros(len(ov.true_area)), ov.iou]).argmax(1) - 1
    rows = np.flatnonzero(best >= 0)
    cols = best[rows]
    inter = ov.inter[rows, cols].sum()
    union = ov.union[rows, cols].sum() + ov.true_area[best < 0].sum() + np.delete(ov.pred_area, cols).sum()
    return float(inter / union) if union else float("nan")


@dataclass
class _PQCounts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    sum_iou: float = 0.0

    def __add__(self, other: _PQCounts) -> _PQCounts:
        return _PQCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.sum_iou + other.sum_iou)

    def scores(self, scored: bool = True) -> dict[str, float]:
        """DQ = TP / (TP + FP/2 + FN/2) (an F1), SQ = mean IoU of the pairs, PQ = DQ * SQ; 0 without
        a TP, nan when not `scored` (a class left out of the mean)."""
        dq = self.tp / (self.tp + 0.5 * self.fp + 0.5 * self.fn) if self.tp else 0.0
        sq = self.sum_iou / self.tp if self.tp else 0.0
        pq = dq * sq
        if not scored:
            dq = sq = pq = float("nan")
        return {"dq": dq, "sq": sq, "pq": pq, "tp": self.tp, "fp": self.fp, "fn": self.fn}


def _match(iou: np.ndarray, match_iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Unique (true, pred) index pairs with IoU > match_iou, as `get_fast_pq` pairs them.

    Above 0.5 a pair is unique by itself (a nucleus cannot overlap two disjoint ones by more than
    half of each union), so the threshold alone gives the maximal matching; below it the Hungarian
    assignment on IoU finds the maximal unique one.
    """
    if match_iou >= 0.5:
        return np.nonzero(iou > match_iou)
    rows, cols = linear_sum_assignment(-iou)
    keep = iou[rows, cols] > match_iou
    return rows[keep], cols[keep]


def _pq_counts(true_inst: np.ndarray, pred_inst: np.ndarray, match_iou: float) -> _PQCounts:
    if match_iou < 0:
        raise ValueError(f"match_iou must be >= 0, got {match_iou}")
    iou = _overlap(true_inst, pred_inst).iou
    rows, cols = _match(iou, match_iou)
    n, m = iou.shape
    return _PQCounts(len(rows), m - len(rows), n - len(rows), float(iou[rows, cols].sum()))


def pq(true_inst: np.ndarray, pred_inst: np.ndarray, match_iou: float = MATCH_IOU) -> dict[str, float]:
    """Panoptic quality (Kirillov et al. 2019) of instance maps, HoVer-Net's `get_fast_pq`.

    A true and a predicted nucleus pair when their IoU > match_iou (strictly: two halves of a
    nucleus, IoU 0.5 each, pair with nothing). Returns {"dq", "sq", "pq", "tp", "fp", "fn"}.
    """
    return _pq_counts(true_inst, pred_inst, match_iou).scores()


def _class_map(inst: np.ndarray, class_of_inst: Mapping[int, int], cls: int) -> np.ndarray:
    """The instances of class `cls`; all others become background."""
    ids = [i for i, c in class_of_inst.items() if c == cls]
    return np.where(np.isin(inst, ids), inst, 0)


def _class_counts(
    true_inst: np.ndarray,
    true_class_of_inst: Mapping[int, int],
    pred_inst: np.ndarray,
    pred_class_of_inst: Mapping[int, int],
    classes: Sequence[int],
    match_iou: float,
) -> dict[int, _PQCounts]:
    """PQ counts per class, pairing only nuclei of that class: a nucleus of the wrong class is a
    false positive in its predicted class and a false negative in its true class."""
    for name, inst, class_of_inst in (("true", true_inst, true_class_of_inst), ("pred", pred_inst, pred_class_of_inst)):
        missing = np.setdiff1d(inst, [0, *class_of_inst])
        if missing.size:
            raise ValueError(f"{name} instances without a class: {missing[:10].tolist()}")
    true_maps = {c: _class_map(true_inst, true_class_of_inst, c) for c in classes}
    pred_maps = {c: _class_map(pred_inst, pred_class_of_inst, c) for c in classes}
    return {c: _pq_counts(true_maps[c], pred_maps[c], match_iou) for c in classes}


def _image_mpq(counts: Mapping[int, _PQCounts]) -> dict:
    """Per-class scores and their mean over the classes present in the ground truth (PanNuke)."""
    present = {c: k.tp + k.fn > 0 for c, k in counts.items()}
    per_class = {c: k.scores(scored=present[c]) for c, k in counts.items()}
    pqs = [per_class[c]["pq"] for c in per_class if present[c]]
    return {"mpq": float(np.mean(pqs)) if pqs else float("nan"), "per_class": per_class}


def multiclass_pq(
    true_inst: np.ndarray,
    true_class_of_inst: Mapping[int, int],
    pred_inst: np.ndarray,
    pred_class_of_inst: Mapping[int, int],
    classes: Sequence[int],
    match_iou: float = MATCH_IOU,
) -> dict:
    """Per-image multi-class PQ and mPQ, as PanNuke evaluates (Gamper et al. 2020).

    PQ of each class in `classes` on the instances of that class alone (`*_class_of_inst` maps
    instance id -> class; every instance in a map needs one). mPQ is the mean PQ over the classes
    present in this image's ground truth; averaging it over images gives PanNuke's mPQ, which is
    noisy when images hold few nuclei of a class: prefer `PQAccumulator`'s mPQ+ for a data set.

    Returns {"mpq": float, "per_class": {cls: {"dq", "sq", "pq", "tp", "fp", "fn"}}}; a class
    absent from the ground truth has nan dq/sq/pq, but its counts (false positives) are there.
    """
    return _image_mpq(_class_counts(true_inst, true_class_of_inst, pred_inst, pred_class_of_inst, classes, match_iou))


@dataclass
class PQAccumulator:
    """Dataset-level multi-class PQ, CoNIC's mPQ+ (Graham et al. 2021).

    Per class, TP, FP, FN and the summed IoU of the pairs add up over all images and PQ is computed
    once from the sums; mPQ+ is the mean over classes. Every nucleus weighs the same, whereas
    per-image mPQ gives an image with one nucleus of a class a whole PQ of 0 or 1 for it, so mPQ+
    is the more stable figure on small sets.
    """

    classes: Sequence[int]
    match_iou: float = MATCH_IOU
    counts: dict[int, _PQCounts] = field(init=False)

    def __post_init__(self) -> None:
        self.counts = {c: _PQCounts() for c in self.classes}

    def add(
        self,
        true_inst: np.ndarray,
        true_class_of_inst: Mapping[int, int],
        pred_inst: np.ndarray,
        pred_class_of_inst: Mapping[int, int],
    ) -> dict:
        """Adds one image; returns its `multiclass_pq` result, so one pass gives both figures."""
        counts = _class_counts(
            true_inst, true_class_of_inst, pred_inst, pred_class_of_inst, self.classes, self.match_iou
        )
        for c, k in counts.items():
            self.counts[c] += k
        return _image_mpq(counts)

    def result(self) -> dict:
        """{"mpq_plus": float, "per_class": {cls: {"dq", "sq", "pq", "tp", "fp", "fn"}}}.

        A class with no nucleus in any true or predicted map has nan scores and stays out of the
        mean; one with only false positives scores 0 and counts.
        """
        seen = {c: k.tp + k.fp + k.fn > 0 for c, k in self.counts.items()}
        per_class = {c: k.scores(scored=seen[c]) for c, k in self.counts.items()}
        pqs = [per_class[c]["pq"] for c in per_class if seen[c]]
        return {"mpq_plus": float(np.mean(pqs)) if pqs else float("nan"), "per_class": per_class}


def pairing_radius_px(mpp: float, radius_um: float = RADIUS_UM) -> float:
    """Centroid pairing radius in pixels at `mpp` µm/px: HoVer-Net's 12 px at 0.25 µm/px is 3 µm."""
    return radius_um / mpp


def pair_coordinates(
    true_xy: np.ndarray, pred_xy: np.ndarray, radius_px: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique (true, pred) centroid pairs no farther apart than `radius_px`, by Hungarian matching.

    The assignment finds the most pairs within the radius and, among those, the least total
    Euclidean distance. HoVer-Net's `pair_coordinates` assigns on the raw distances and drops far
    pairs afterwards, which can trade a pair within the radius for a shorter total of far ones; it
    also truncates centroids to int first. Both agree whenever no such trade arises.

    Returns (pairs (K, 2) of [true index, pred index], unpaired true indices, unpaired pred indices).
    """
    dist = cdist(np.reshape(true_xy, (-1, 2)), np.reshape(pred_xy, (-1, 2)))
    far = dist > radius_px
    # A far pair costs more than any set of near pairs together, so trading one near pair for
    # any saving in far ones never pays.
    cost = np.where(far, radius_px * (min(dist.shape) + 1) + 1, dist)
    rows, cols = linear_sum_assignment(cost)
    near = ~far[rows, cols]
    rows, cols = rows[near], cols[near]
    unpaired_true = np.setdiff1d(np.arange(dist.shape[0]), rows)
    unpaired_pred = np.setdiff1d(np.arange(dist.shape[1]), cols)
    return np.column_stack([rows, cols]), unpaired_true, unpaired_pred


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def _f1_type(
    paired_true: np.ndarray, paired_pred: np.ndarray, unpaired_true: np.ndarray, unpaired_pred: np.ndarray, c: int
) -> float:
    """HoVer-Net's type F1 of class c (Graham et al. 2019, `compute_stats.py`):

        F1_c = 2 (TP_c + TN_c) / (2 (TP_c + TN_c) + 2 FP_c + 2 FN_c + FP_d + FN_d)

    TP_c, FP_c, FN_c count paired nuclei typed c in both, in the prediction only and in the truth
    only; FP_d and FN_d count the unpaired predictions and true nuclei of class c. The reference
    counts TN_c over the paired nuclei typed c in the truth or the prediction, so TN_c is always 0
    and is left out. (It also passes the unpaired arrays swapped, harmless as FP_d and FN_d weigh
    the same.) nan when no true or predicted nucleus is of class c.
    """
    tp = np.sum((paired_true == c) & (paired_pred == c))
    fp = np.sum((paired_true != c) & (paired_pred == c))
    fn = np.sum((paired_true == c) & (paired_pred != c))
    den = 2 * tp + 2 * fp + 2 * fn + np.sum(unpaired_pred == c) + np.sum(unpaired_true == c)
    return float(2 * tp / den) if den else float("nan")


@dataclass
class DetectionAccumulator:
    """Detection and classification of nuclei centroids pooled over images, as HoVer-Net's
    `run_nuclei_type_stat`: centroids pair within each image, then the classes of the pairs and of
    the unpaired nuclei of all images are pooled and scored once. Assumes exhaustive labels."""

    radius_px: float
    classes: Sequence[int]
    _paired_true: list[int] = field(default_factory=list, init=False)
    _paired_pred: list[int] = field(default_factory=list, init=False)
    _unpaired_true: list[int] = field(default_factory=list, init=False)
    _unpaired_pred: list[int] = field(default_factory=list, init=False)

    def add(self, true_xy: np.ndarray, true_classes: np.ndarray, pred_xy: np.ndarray, pred_classes: np.ndarray) -> None:
        """One image: centroids (N, 2) as (x, y) and their classes (N,)."""
        true_classes, pred_classes = np.asarray(true_classes).ravel(), np.asarray(pred_classes).ravel()
        if true_classes.size * 2 != np.size(true_xy) or pred_classes.size * 2 != np.size(pred_xy):
            raise ValueError("each centroid needs one class")
        pairs, unpaired_true, unpaired_pred = pair_coordinates(true_xy, pred_xy, self.radius_px)
        self._paired_true += true_classes[pairs[:, 0]].tolist()
        self._paired_pred += pred_classes[pairs[:, 1]].tolist()
        self._unpaired_true += true_classes[unpaired_true].tolist()
        self._unpaired_pred += pred_classes[unpaired_pred].tolist()

    def result(self) -> dict:
        """{"f1_d", "precision_d", "recall_d", "acc", "f1_c": {cls: F1}, "tp_d", "fp_d", "fn_d"}.

        F1_d = 2 TP / (2 TP + FP + FN) over pairs regardless of class; acc is the fraction of pairs
        whose classes agree; F1_c is `_f1_type`'s.
        """
        pt, pp = np.array(self._paired_true, int), np.array(self._paired_pred, int)
        ut, up = np.array(self._unpaired_true, int), np.array(self._unpaired_pred, int)
        tp, fp, fn = len(pt), len(up), len(ut)
        return {
            "f1_d": _ratio(2 * tp, 2 * tp + fp + fn),
            "precision_d": _ratio(tp, tp + fp),
            "recall_d": _ratio(tp, tp + fn),
            "acc": _ratio(np.sum(pt == pp), tp),
            "f1_c": {c: _f1_type(pt, pp, ut, up, c) for c in self.classes},
            "tp_d": tp,
            "fp_d": fp,
            "fn_d": fn,
        }


def detection_f1(
    true_centroids: np.ndarray,
    true_classes: np.ndarray,
    pred_centroids: np.ndarray,
    pred_classes: np.ndarray,
    radius_px: float,
    classes: Sequence[int],
) -> dict:
    """Detection F1 and HoVer-Net's type F1 on one image; see `DetectionAccumulator` for a data set.

    Centroids are (N, 2) as (x, y); pairs are at most `radius_px` apart (`pairing_radius_px`).
    """
    acc = DetectionAccumulator(radius_px, classes)
    acc.add(true_centroids, true_classes, pred_centroids, pred_classes)
    return acc.result()
