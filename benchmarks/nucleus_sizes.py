"""Median nucleus area per class (px at 0.25 µm/px) of the real validation and training tiles and of
candidate folders (benchmarks/texture_stage.py outputs): whether pasted nuclei are as large as real ones.

    python benchmarks/nucleus_sizes.py --data ../shared/data/consep_patched /tmp/e_ship8 /tmp/e_size8
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

import numpy as np

from cosyn.data.dataset import split_by_source
from cosyn.data.formats import read_dataset
from cosyn.data.sample import Sample
from cosyn.training.config import TrainConfig


def sizes(tiles: Iterable[Sample]) -> dict[str, str]:
    """Per class name: count, median and 90th percentile of instance areas (class by majority of pixels)."""
    areas: dict[int, list[int]] = {}
    names: tuple[str, ...] = ()
    for s in tiles:
        names = s.classes.names
        counts = np.bincount(s.inst_map.ravel())
        for k in np.flatnonzero(counts[1:]) + 1:
            cls = int(np.bincount(s.class_map[s.inst_map == k]).argmax())
            areas.setdefault(cls, []).append(int(counts[k]))
    return {names[c]: f"n {len(v)}, median {np.median(v):.0f}, p90 {np.percentile(v, 90):.0f}"
            for c, v in sorted(areas.items()) if c > 0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("candidates", nargs="*")
    args = ap.parse_args()
    seq = read_dataset(args.data)
    samples = [seq[i] for i in range(len(seq))]
    train, val = split_by_source(samples, TrainConfig.val_fraction, TrainConfig.seed)
    print("real validation:", sizes(samples[i] for i in val))
    print("real training:  ", sizes(samples[i] for i in train))
    for folder in args.candidates:
        cand = read_dataset(folder, "folder")
        print(f"{folder}:", sizes(cand[i] for i in range(len(cand))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
