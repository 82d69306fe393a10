"""Section 2, image-label consistency: a segmenter trained on real train tiles, scored on generated
images against the generated labels, next to its score on the real split tiles."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cosyn.evaluation.evaluate.sections.fidelity import ratio
from cosyn.evaluation.evaluate.tiles import Generated, RealData
from cosyn.evaluation.segmenter import score, truths
from cosyn.segmentation import Segmenter


def consistency(seg: Segmenter, gens: Sequence[Generated], real: RealData) -> dict[str, Any]:
    on_real = score(seg, truths(real.split, seg.config.mpp), progress=True)
    on_generated = score(seg, truths([g.sample for g in gens], seg.config.mpp), progress=True)
    return {"segmenter": seg.train_info, "real": on_real, "generated": on_generated,
            "pq_ratio": ratio(on_generated["pq"], on_real["pq"]),
            "mpq_plus_ratio": ratio(on_generated["mpq_plus"], on_real["mpq_plus"])}
