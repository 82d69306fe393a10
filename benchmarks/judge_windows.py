"""What the realism judge finds: the windows one judge seed calls most fake and most real, as a picture.

For each judge seed (the source split and judge of `benchmarks/realism_judge.py`'s 0.25 µm/px JPEG view) a
judge is trained on the fit half, then scores 64² windows (on a 48 px grid) of the held-out sources. Four
rows per seed, `--top` windows each: the candidate's most fake, the candidate's most real, the real
tiles' most fake, the real tiles' most real. Reading it is how the marking ink of one training slide
was found in the texture stage's outputs (docs/model.md).

    python benchmarks/judge_windows.py --candidate /tmp/e_size8 --seeds 2,5 --out /tmp/judge_windows.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch
from realism_judge import candidate_tiles, real_tiles
from seam_diagnostic import windows

from cosyn.evaluation.c2st import C2STConfig, _tensor, _train_and_score
from cosyn.evaluation.judge import View, source_halves

SHOWN_PX = 96  # each 64² window drawn at this size, nearest-neighbour, so texture stays visible


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/consep_patched")
    ap.add_argument("--candidate", type=Path, required=True)
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated judge seeds (0..5)")
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--out", type=Path, required=True, help="a .png")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg, view = C2STConfig(), View(True, 1)
    val, _ = real_tiles(args.data)
    cand = candidate_tiles(str(args.candidate), {s.source for s in val})
    real_v, cand_v = [view(s.image) for s in val], [view(s.image) for s in cand]
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        fit, scored = source_halves([s.source for s in val], seed)
        train = [im for im, s in zip(real_v, val, strict=True) if s.source in fit] + \
                [im for im, s in zip(cand_v, cand, strict=True) if s.source in fit]
        y_train = torch.tensor([0.0] * sum(s.source in fit for s in val) + [1.0] * sum(s.source in fit for s in cand))
        test, side = [], []
        for label, tiles, images in ((0, val, real_v), (1, cand, cand_v)):
            for s, im in zip(tiles, images, strict=True):
                if s.source in scored:
                    found, _ = windows(im, cfg.crop, 48)
                    test += found
                    side += [label] * len(found)
        scores = _train_and_score(_tensor(train), y_train, _tensor(test), cfg, seed)
        side_a = np.array(side)
        print(f"judge seed {seed}: scored sources {sorted(scored)}; rows: candidate most fake, candidate most "
              "real, real most fake, real most real", flush=True)
        for label in (1, 0):
            idx = np.flatnonzero(side_a == label)
            order = idx[np.argsort(-scores[idx])]
            for group in (order[: args.top], order[::-1][: args.top]):
                rows.append(np.concatenate([cv2.resize(test[i], (SHOWN_PX, SHOWN_PX), interpolation=cv2.INTER_NEAREST)
                                            for i in group], 1))
        rows.append(np.full((8, rows[-1].shape[1], 3), 255, np.uint8))
    cv2.imwrite(str(args.out), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
