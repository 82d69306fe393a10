"""Scoring a nuclei segmenter (`cosyn.segmentation`) against labelled tiles, the way the field does.

The segmenter itself (a HoVer-Net-style network on MONAI) lives in `cosyn.segmentation`; this
module holds what the evaluation adds: the reference tiles and the figures of `metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from cosyn.core.instances import instance_table
from cosyn.data.dataset import resample_sample
from cosyn.data.sample import Sample
from cosyn.evaluation.metrics import DetectionAccumulator, PQAccumulator, aji, dice, pairing_radius_px, pq
from cosyn.segmentation import SegmenterConfig, SegPrediction


class Predictor(Protocol):
    """What `score` needs: a config (classes, mpp) and instances + classes of an image."""

    config: SegmenterConfig

    def predict(self, image: np.ndarray) -> SegPrediction: ...


@dataclass
class Truth:
    """A labelled image at the segmenter's mpp: the reference a prediction is scored against."""

    image: np.ndarray
    inst_map: np.ndarray
    inst_classes: dict[int, int]

    @classmethod
    def from_sample(cls, sample: Sample) -> Truth:
        classes = dict(zip(sample.inst_ids.tolist(), sample.inst_classes.tolist(), strict=True))
        return cls(sample.image, sample.inst_map, classes)


def truths(samples: Sequence[Sample], mpp: float) -> list[Truth]:
    return [Truth.from_sample(resample_sample(s, mpp)) for s in samples]


def _centroids(inst: np.ndarray, classes: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    ids, xy, _ = instance_table(inst, np.zeros(inst.shape, np.uint8))
    return xy, np.array([classes.get(int(i), 0) for i in ids], np.int64)


def score(seg: Predictor, tiles: Sequence[Truth], progress: bool = False) -> dict[str, Any]:
    """The field's figures of `seg` on `tiles`: Dice, AJI and PQ (DQ, SQ) are means over images
    (HoVer-Net), leaving out images where they are undefined (no nucleus in truth or prediction);
    mPQ+ and per-class PQ are pooled over the set (CoNIC); F1d / F1c pool centroid pairs (HoVer-Net)."""
    classes = list(range(1, seg.config.num_classes))
    pq_acc = PQAccumulator(classes)
    det = DetectionAccumulator(pairing_radius_px(seg.config.mpp), classes)
    rows: dict[str, list[float]] = {"dice": [], "aji": [], "pq": [], "dq": [], "sq": []}
    for t in tqdm(tiles, desc="scoring", unit="tile", disable=not progress, leave=False):
        pred = seg.predict(t.image)
        rows["dice"].append(dice(t.inst_map, pred.inst_map))
        rows["aji"].append(aji(t.inst_map, pred.inst_map))
        binary = pq(t.inst_map, pred.inst_map)
        empty = binary["tp"] + binary["fp"] + binary["fn"] == 0  # no nucleus on either side: PQ is undefined
        for key in ("pq", "dq", "sq"):
            rows[key].append(float("nan") if empty else binary[key])
        pq_acc.add(t.inst_map, t.inst_classes, pred.inst_map, pred.inst_classes)
        det.add(*_centroids(t.inst_map, t.inst_classes), *_centroids(pred.inst_map, pred.inst_classes))
    mpq = pq_acc.result()
    detection = det.result()
    names = seg.config.classes
    out: dict[str, Any] = {k: float(np.nanmean(v)) if v else float("nan") for k, v in rows.items()}
    out.update({
        "mpq_plus": mpq["mpq_plus"],
        "pq_per_class": {names[c]: mpq["per_class"][c]["pq"] for c in classes},
        "f1_d": detection["f1_d"],
        "f1_c": {names[c]: detection["f1_c"][c] for c in classes},
        "f1_c_mean": float(np.nanmean([detection["f1_c"][c] for c in classes])),
        "tiles": len(tiles),
    })
    return out
