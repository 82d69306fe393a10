"""Real | one column per second stage, all at 0.25 µm/px, from the same base triples: the model card's grid.

    python benchmarks/second_stage_grid.py --data ../shared/data/consep_patched --base /tmp/base_val \
        --column Upsampler=/tmp/cand_upsampler_same --column "Texture stage"=/tmp/cand_texture \
        --tiles syn_000003,syn_000021,syn_000040,syn_000058 --out checkpoints/default/realism_grid.jpg

Each row is one validation tile: the real tile whose layout was sampled, then each candidate's output
(folder format, as benchmarks/texture_stage.py writes), with the label contours drawn on a second copy
when --contours is given.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from cosyn.core.visual import grid, instance_contours
from cosyn.data.formats import read_dataset


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--base", type=Path, required=True, help="the base triples' folder (for each tile's origin)")
    ap.add_argument("--column", action="append", required=True, help="TITLE=FOLDER")
    ap.add_argument("--tiles", required=True, help="comma-separated tile names")
    ap.add_argument("--contours", action="store_true", help="also each candidate with its instance contours")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    real = read_dataset(args.data)
    columns = [(c.split("=", 1)[0], read_dataset(c.split("=", 1)[1], "folder")) for c in args.column]
    rows = []
    for name in args.tiles.split(","):
        origin = json.loads((args.base / "meta" / f"{name}.json").read_text())["origin"]["tile"]
        row = [real[real.names.index(origin)].image]
        for _, seq in columns:
            s = seq[seq.names.index(name)]
            row.append(s.image)
            if args.contours:
                row.append(instance_contours(s.image, s.inst_map))
        rows.append(row)
    Image.fromarray(np.asarray(grid(rows))).save(args.out, quality=90)
    print(f"{args.out}: rows {args.tiles}; columns real | {' | '.join(t for t, _ in columns)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
