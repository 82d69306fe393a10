"""Probes of what the realism judge reads: two known changes to known inputs, and where it finds a candidate.

    # a candidate's images blurred by SIGMA px (labels untouched): is its sharpness what the judge sees?
    python benchmarks/judge_probes.py blur /tmp/x_nw3 /tmp/x_blur0.35 0.35
    python benchmarks/realism_judge.py --views "0.25 jpeg" --seeds 6 --candidate blur0.35=/tmp/x_blur0.35
    # the validation tiles against themselves shifted by (DY, DX) px: can it see the JPEG grid's phase?
    python benchmarks/judge_probes.py phase 3 5
    # per scored source, its generated crops against its own real crops, under each seed's judge
    python benchmarks/judge_probes.py by-source /tmp/x_nw3 --judge-seeds 0,1,2,5
    # the stain (L*a*b* mean of stained pixels) of each training slide, offset from their average; then per
    # validation source its real tiles', the stain-matched floor's and a candidate's
    python benchmarks/judge_probes.py colour /tmp/x_ms_a

A copied block off the 8 px JPEG grid keeps its old block edges; the phase probe asks whether the judge,
after its own q75 pass, can tell (0.5: it cannot).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np
import torch
from realism_judge import candidate_tiles, images_by_slide, in_validation_stains, real_tiles

from cosyn.evaluation.c2st import C2STConfig, _tensor, _train_and_score, crops, roc_auc
from cosyn.evaluation.judge import View, compare, source_halves
from cosyn.stages.texture.stain import Stain


def blurred_copy(src: Path, dst: Path, sigma: float) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    for path in sorted((dst / "images").glob("*.png")):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        cv2.imwrite(str(path), cv2.GaussianBlur(image, (0, 0), sigma))


def phase(data: str, dy: int, dx: int, seeds: int) -> dict:
    val, _ = real_tiles(data)
    side = min(s.image.shape[0] for s in val) - 8  # room for a shift of up to 8 px
    at_grid = [s.image[:side, :side] for s in val]
    shifted = [s.image[dy:dy + side, dx:dx + side] for s in val]
    sources = [s.source for s in val]
    return compare(at_grid, sources, shifted, sources, C2STConfig(seeds=tuple(range(seeds))), View(True, 1))


def by_source(data: str, folder: Path, judge_seeds: list[int]) -> dict[int, dict[str, float]]:
    """{seed: {scored source: AUC of its generated crops against its real crops}}, each judge trained as
    realism_judge.py's on the seed's fit half (its per-seed AUC pools the scored sources)."""
    cfg, view = C2STConfig(), View(True, 1)
    val, _ = real_tiles(data)
    cand = candidate_tiles(str(folder), {s.source for s in val})
    out = {}
    for seed in judge_seeds:
        fit, scored = source_halves([s.source for s in val], seed)
        train = [(view(s.image), label) for label, tiles in ((0.0, val), (1.0, cand)) for s in tiles if s.source in fit]
        test = [(c, label, s.source) for label, tiles in ((0, val), (1, cand)) for s in tiles if s.source in scored
                for c in crops(view(s.image), cfg.crop)]
        scores = _train_and_score(_tensor([im for im, _ in train]), torch.tensor([y for _, y in train]),
                                  _tensor([c for c, _, _ in test]), cfg, seed)
        labels, sources = np.array([y for _, y, _ in test]), np.array([s for _, _, s in test])
        out[seed] = {src: roc_auc(labels[sources == src], scores[sources == src]) for src in sorted(scored)}
    return out


def colour(data: str, folder: Path) -> list[str]:
    """Lines: each training slide's stain as an offset from the slides' average (bluest first, by b*), then per
    validation source the stain of its real tiles, of the floor's tiles moved to its stain, and of `folder`'s."""
    val, train = real_tiles(data)
    by_slide = images_by_slide(data)
    slides = sorted(set(by_slide) - {s.source for s in val})  # the whole training split's slides, as the bank's
    stains = {src: Stain.of(by_slide[src]) for src in slides}
    average = np.array(Stain.average(list(stains.values())).mean)
    lines = [f"slide {src}: L*a*b* offset {np.round(np.array(stains[src].mean) - average, 1).tolist()}"
             for src in sorted(slides, key=lambda src: stains[src].mean[2])]
    floor, assigned = in_validation_stains(data, val, train)
    cand = candidate_tiles(str(folder), {s.source for s in val})
    for src in sorted({s.source for s in val}):
        for name, images in (("real", [s.image for s in val if s.source == src]),
                             ("stain-matched floor", [im for im, a in zip(floor, assigned, strict=True) if a == src]),
                             (folder.name, [s.image for s in cand if s.source == src])):
            stain = Stain.of(images)
            lines.append(f"{src} {name}: L*a*b* mean {np.round(stain.mean, 1).tolist()}, "
                         f"spread {np.round(stain.spread, 1).tolist()}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/consep_patched")
    ap.add_argument("--seeds", type=int, default=6)
    sub = ap.add_subparsers(dest="probe", required=True)
    b = sub.add_parser("blur")
    b.add_argument("src", type=Path)
    b.add_argument("dst", type=Path)
    b.add_argument("sigma", type=float)
    p = sub.add_parser("phase")
    p.add_argument("dy", type=int)
    p.add_argument("dx", type=int)
    s = sub.add_parser("by-source")
    s.add_argument("candidate", type=Path)
    s.add_argument("--judge-seeds", default="0,1,2,3,4,5")
    c = sub.add_parser("colour")
    c.add_argument("candidate", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.probe == "blur":
        blurred_copy(args.src, args.dst, args.sigma)
        print(f"wrote {args.dst}")
    elif args.probe == "colour":
        print("\n".join(colour(args.data, args.candidate)))
    elif args.probe == "by-source":
        for seed, aucs in by_source(args.data, args.candidate, [int(k) for k in args.judge_seeds.split(",")]).items():
            print(f"judge seed {seed}: " + ", ".join(f"{src} {auc:.3f}" for src, auc in aucs.items()), flush=True)
    else:
        row = phase(args.data, args.dy, args.dx, args.seeds)
        print(f"shift ({args.dy}, {args.dx}): C2ST AUC {row['auc_mean']:.3f}, per seed "
              f"{', '.join(f'{a:.3f}' for a in row['auc_per_seed'])}")


if __name__ == "__main__":
    main()
