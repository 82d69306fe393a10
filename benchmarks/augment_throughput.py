"""Synthetic tiles per minute of `cosyn augment` in one process, end to end (sampling, instance
cutting, perturbation, atomic writes).

    python benchmarks/augment_throughput.py --checkpoint checkpoints/default \
        --data ../shared/data/consep_patched --tiles 10 --steps 25

Generates `--tiles` tiles into a temporary folder (deleted afterwards) and reports wall seconds
per tile and tiles per minute. Several processes scale this by up to their count on as many free
cores: `torchrun --standalone --nproc_per_node N -m cosyn augment ... --tiles N_TILES`. Writes
JSON to `--out` and prints the command that produced it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

from cosyn.augment import AugmentConfig, SamplingSettings, augment
from cosyn.model.pipeline import CoSynPipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="checkpoints/default")
    ap.add_argument("--data", required=True)
    ap.add_argument("--tiles", type=int, default=10)
    ap.add_argument("--steps", type=int, default=SamplingSettings.steps)
    ap.add_argument("--guidance", type=float, default=SamplingSettings.guidance)
    ap.add_argument("--random-layouts", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--out", default="benchmarks/results/augment_throughput.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    pipe = CoSynPipeline.from_pretrained(args.checkpoint)
    pipe.text_encoder.encode([""])  # loaded before the clock starts: a one-off cost, not a per-tile one
    with tempfile.TemporaryDirectory() as tmp:
        cfg = AugmentConfig(args.checkpoint, args.data, tmp, args.tiles, random_layouts=args.random_layouts,
                            sampling=SamplingSettings(args.steps, args.guidance))
        t0 = time.perf_counter()
        stats = augment(cfg, pipe=pipe, rank=0, world=1)
        seconds = time.perf_counter() - t0
    # planning (reading the dataset) is in the total; per tile it amortises over larger runs
    result = {"command": command, "tiles": stats["generated"], "seconds": round(seconds, 2),
              "s_per_tile": round(seconds / max(1, stats["generated"]), 3),
              "tiles_per_min": round(60 * stats["generated"] / seconds, 2), "steps": args.steps,
              "guidance": args.guidance, "threads": torch.get_num_threads(), "checkpoint_sha256": pipe.sha256}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    print(f"wrote {out}\ncommand: {command}")


if __name__ == "__main__":
    main()
