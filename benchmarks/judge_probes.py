"""Two probes of what the realism judge reads, each a known change to a known input.

    # a candidate's images blurred by SIGMA px (labels untouched): is its sharpness what the judge sees?
    python benchmarks/judge_probes.py blur /tmp/x_nw3 /tmp/x_blur0.35 0.35
    python benchmarks/realism_judge.py --views "0.25 jpeg" --seeds 6 --candidate blur0.35=/tmp/x_blur0.35
    # the validation tiles against themselves shifted by (DY, DX) px: can it see the JPEG grid's phase?
    python benchmarks/judge_probes.py phase 3 5

A copied block off the 8 px JPEG grid keeps its old block edges; the phase probe asks whether the judge,
after its own q75 pass, can tell (0.5: it cannot).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2
import torch
from realism_judge import real_tiles

from cosyn.evaluation.c2st import C2STConfig
from cosyn.evaluation.judge import View, compare


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
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.probe == "blur":
        blurred_copy(args.src, args.dst, args.sigma)
        print(f"wrote {args.dst}")
    else:
        row = phase(args.data, args.dy, args.dx, args.seeds)
        print(f"shift ({args.dy}, {args.dx}): C2ST AUC {row['auc_mean']:.3f}, per seed "
              f"{', '.join(f'{a:.3f}' for a in row['auc_per_seed'])}")


if __name__ == "__main__":
    main()
