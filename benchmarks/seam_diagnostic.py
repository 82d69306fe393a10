"""Where does the realism judge find a candidate: at its quilt seams or everywhere? Per-window judge scores.

For each judge seed (the same source split and judge as `benchmarks/realism_judge.py`'s 0.25 µm/px JPEG
view), a judge is trained on the fit half of the real validation tiles and the candidate's, then scores
every 64² window (on a 16 px grid) of the held-out half. The candidate's windows are grouped by how much
of them lies on a seam (the masks `benchmarks/texture_stage.py --seams DIR` writes), and each group's
windows are ranked against all the real windows (AUC). The real windows are grouped by the seam mask of
the candidate tile made from their own layout: a control for where in a tile a window lies.

    python benchmarks/texture_stage.py --data ../shared/data/consep_patched --base /tmp/base_val \
        --out /tmp/e_p128 --seams /tmp/e_p128_seams --settings '{"patch": 128, "overlap": 32}'
    python benchmarks/seam_diagnostic.py --candidate /tmp/e_p128 --seams /tmp/e_p128_seams
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch
from realism_judge import candidate_tiles, real_tiles

from cosyn.evaluation.c2st import C2STConfig, _tensor, _train_and_score, roc_auc
from cosyn.evaluation.judge import View, source_halves

BINS = (0.0, 1e-9, 0.05, 0.10, 0.15, 1.01)  # seam fraction of a window: none, then rising


def windows(image: np.ndarray, size: int, stride: int) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    h, w = image.shape[:2]
    at = [(y, x) for y in range(0, h - size + 1, stride) for x in range(0, w - size + 1, stride)]
    return [image[y:y + size, x:x + size] for y, x in at], at


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/consep_patched")
    ap.add_argument("--candidate", type=Path, required=True)
    ap.add_argument("--seams", type=Path, required=True)
    ap.add_argument("--base", type=Path, default=Path("/tmp/base_val"),
                    help="the base triples the candidate was made from (their meta names each layout's real tile)")
    ap.add_argument("--stride", type=int, default=16)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = C2STConfig()
    view = View(True, 1)
    val, _ = real_tiles(args.data)
    cand = candidate_tiles(str(args.candidate), {s.source for s in val})
    seams = [cv2.imread(str(args.seams / f"{s.name}.png"), cv2.IMREAD_GRAYSCALE) > 0 for s in cand]
    origin = {json.loads((args.base / "meta" / f"{s.name}.json").read_text())["origin"]["tile"]: k
              for k, s in enumerate(cand)}
    real_seams = [seams[origin[s.name]] for s in val]  # the seams of the candidate made from its layout
    real_v, cand_v = [view(s.image) for s in val], [view(s.image) for s in cand]
    report = []
    for seed in range(args.seeds):
        fit, score = source_halves([s.source for s in val], seed)
        train = [im for im, s in zip(real_v, val, strict=True) if s.source in fit] + \
                [im for im, s in zip(cand_v, cand, strict=True) if s.source in fit]
        y_train = torch.tensor([0.0] * sum(s.source in fit for s in val) + [1.0] * sum(s.source in fit for s in cand))
        test, label, frac = [], [], []
        for side, tiles, images, masks in ((0, val, real_v, real_seams), (1, cand, cand_v, seams)):
            for i, (s, im) in enumerate(zip(tiles, images, strict=True)):
                if s.source not in score:
                    continue
                wins, at = windows(im, cfg.crop, args.stride)
                test += wins
                label += [side] * len(wins)
                frac += [float(masks[i][y:y + cfg.crop, x:x + cfg.crop].mean()) for y, x in at]
        scores = _train_and_score(_tensor(train), y_train, _tensor(test), cfg, seed)
        label_a, frac_a = np.array(label), np.array(frac)
        real_scores = scores[label_a == 0]
        row = {"seed": seed, "auc_all": roc_auc(label_a == 1, scores), "groups": []}
        for lo, hi in zip(BINS[:-1], BINS[1:], strict=True):
            sel = (frac_a >= lo) & (frac_a < hi)
            c, r = sel & (label_a == 1), sel & (label_a == 0)
            if c.sum() < 20:
                continue
            g = {"seam_fraction": [lo, hi], "windows": int(c.sum()),
                 "auc_vs_all_real": roc_auc(np.r_[np.zeros(len(real_scores)), np.ones(c.sum())],
                                            np.r_[real_scores, scores[c]])}
            if r.sum() >= 20:  # control: real windows at the same places, against all real windows
                g["real_same_place_vs_all_real"] = roc_auc(np.r_[np.zeros(len(real_scores)), np.ones(r.sum())],
                                                           np.r_[real_scores, scores[r]])
            row["groups"].append(g)
        print(json.dumps(row), flush=True)
        report.append(row)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
