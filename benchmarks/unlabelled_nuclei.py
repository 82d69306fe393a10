"""Nuclei in the image without one in the labels: a segmenter trained on real tiles finds nuclei in each
tile, and a detection that overlaps no labelled instance (by any pixel of its own centre 3×3) counts as
unlabelled. The rate (unlabelled / detections) of generated tiles is compared with the real validation
tiles' own rate against their expert annotations, and a known-bad control (each generated image with the
labels of another tile) shows the measure can fail.

    python benchmarks/unlabelled_nuclei.py --segmenter /tmp/cosyn_downstream_study/real_none_seed1 \
        --data ../shared/data/consep_patched --candidate texture=/tmp/cand_texture \
        --candidate upsampler=/tmp/cand_upsampler_same

The segmenter folder is what `benchmarks/downstream_study.py --arm real` trains (docs/downstream.md).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from scipy import ndimage as ndi

from cosyn.data.dataset import split_by_source
from cosyn.data.formats import read_dataset
from cosyn.segmentation.segmenter import Segmenter
from cosyn.training.config import TrainConfig


def unlabelled(seg: Segmenter, images: list[np.ndarray], labels: list[np.ndarray]) -> tuple[int, int]:
    """(detections whose centre pixel lies on no labelled instance, detections)."""
    miss = total = 0
    for image, inst in zip(images, labels, strict=True):
        pred = seg.predict(image).inst_map
        ids = np.unique(pred)[1:]
        if not len(ids):
            continue
        centres = ndi.center_of_mass(np.ones_like(pred), pred, ids)
        labelled = ndi.maximum_filter(inst > 0, size=3)
        for y, x in centres:
            total += 1
            miss += not labelled[int(round(y)), int(round(x))]
    return miss, total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--segmenter", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--candidate", action="append", default=[], metavar="NAME=DIR")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seg = Segmenter.load(args.segmenter)
    seq = read_dataset(args.data)
    samples = [seq[i] for i in range(len(seq))]
    _, val = split_by_source(samples, TrainConfig.val_fraction, TrainConfig.seed)
    rows = {}
    miss, total = unlabelled(seg, [samples[i].image for i in val], [samples[i].inst_map for i in val])
    rows["real validation tiles, their annotations"] = miss / max(total, 1)
    for spec in args.candidate:
        name, folder = spec.split("=", 1)
        cand = read_dataset(folder, "folder")
        tiles = [cand[i] for i in range(len(cand))]
        miss, total = unlabelled(seg, [t.image for t in tiles], [t.inst_map for t in tiles])
        rows[name] = miss / max(total, 1)
        shuffled = [tiles[(i + 1) % len(tiles)].inst_map for i in range(len(tiles))]
        miss, total = unlabelled(seg, [t.image for t in tiles], shuffled)
        rows[f"control: {name} with another tile's labels"] = miss / max(total, 1)
    real = rows["real validation tiles, their annotations"]
    for name, rate in rows.items():
        print(f"{name}: {rate:.3f} unlabelled detections ({rate / max(real, 1e-9):.2f}x the real tiles')")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
