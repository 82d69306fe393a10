"""Is a candidate found by its colour alone? A linear judge on colour statistics, beside the realism judge.

Each 64² crop (the realism judge's non-overlapping crops, JPEG view) becomes its L*a*b* mean, spread and
10/50/90th percentiles; a logistic regression learns real against candidate on the fit half of the
sources and is scored on the other half (the realism judge's source split, seeds 0–2). The floor line
puts the training-split tiles in the candidate's place. Also printed per set: the median fraction of a
tile that is tissue away from nuclei (not white, 3 px or more from an annotated or pasted nucleus).

    python benchmarks/colour_judge.py /tmp/e_ship /tmp/cand_tex_p256
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
from realism_judge import candidate_tiles, real_tiles
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from cosyn.data.sample import Sample
from cosyn.evaluation.c2st import crops, roc_auc
from cosyn.evaluation.judge import View, source_halves

CROP = 64
EMPTY_LEVEL = 200  # as the texture stage: brighter in every channel is unstained


def colour_features(image: np.ndarray) -> list[np.ndarray]:
    out = []
    for crop in crops(image, CROP):
        lab = cv2.cvtColor(crop.astype(np.float32) / 255, cv2.COLOR_RGB2LAB).reshape(-1, 3)
        out.append(np.r_[lab.mean(0), lab.std(0), np.percentile(lab, [10, 50, 90], axis=0).ravel()])
    return out


def tissue_fraction(s: Sample) -> float:
    near = cv2.dilate((s.inst_map > 0).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    return float((~near & (s.image.min(-1) < EMPTY_LEVEL)).mean())


def linear_c2st(real: list[Sample], other: list[Sample], shared: bool) -> list[float]:
    view = View(True, 1)
    real_f = [colour_features(view(s.image)) for s in real]
    other_f = [colour_features(view(s.image)) for s in other]
    aucs = []
    for seed in range(3):
        fit, score = source_halves([s.source for s in real], seed)
        other_fit, other_score = (fit, score) if shared else source_halves([s.source for s in other], seed)

        def rows(keep_real: set[str], keep_other: set[str]) -> tuple[np.ndarray, np.ndarray]:
            x0 = [f for fs, s in zip(real_f, real, strict=True) if s.source in keep_real for f in fs]
            x1 = [f for fs, s in zip(other_f, other, strict=True) if s.source in keep_other for f in fs]
            return np.array(x0 + x1), np.r_[np.zeros(len(x0)), np.ones(len(x1))]

        x, y = rows(fit, other_fit)
        xt, yt = rows(score, other_score)
        scaler = StandardScaler().fit(x)
        model = LogisticRegression(max_iter=5000).fit(scaler.transform(x), y)
        aucs.append(roc_auc(yt > 0, model.decision_function(scaler.transform(xt))))
    return aucs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("candidates", nargs="*", help="candidate folders (`cosyn augment --split val` format)")
    ap.add_argument("--data", default="../shared/data/consep_patched")
    args = ap.parse_args()
    val, train = real_tiles(args.data)
    print(f"real validation tiles: tissue fraction {np.median([tissue_fraction(s) for s in val]):.2f}")
    aucs = linear_c2st(val, train, shared=False)
    print(f"floor (training tiles): colour-only AUC per seed {np.round(aucs, 3).tolist()}; tissue fraction "
          f"{np.median([tissue_fraction(s) for s in train]):.2f}")
    for folder in args.candidates:
        cand = candidate_tiles(folder, {s.source for s in val})
        aucs = linear_c2st(val, cand, shared=True)
        print(f"{folder}: colour-only AUC per seed {np.round(aucs, 3).tolist()}; tissue fraction "
              f"{np.median([tissue_fraction(s) for s in cand]):.2f}")


if __name__ == "__main__":
    main()
