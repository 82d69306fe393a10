"""Seconds per generated triple (sampling + instance cutting) per canvas size and step count.

    python benchmarks/sample_latency.py --checkpoint checkpoints/default --steps 10 25 50 --runs 5

The layout is drawn as a user draws it: a SIZE² canvas at 0.25 µm/px (CoNSeP's 40x) holding
CoNSeP's mean nucleus density, which the pipeline samples at the model's mpp (a 256² layout is a
128² canvas for a 0.5 µm/px model). `--layout L.json` times a given layout instead. Each row is
the median of `--runs` timed samples after one warm-up, with classifier-free guidance. Writes JSON
to `--out` and prints the command that produced it. Time it on an idle machine: a training run
beside it slows it several-fold.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from cosyn.augment import SamplingSettings
from cosyn.augment import random_layout_like as random_layout
from cosyn.core.layout import Layout
from cosyn.evaluation.evaluate import time_sampling
from cosyn.model.pipeline import CoSynPipeline
from cosyn.model.text_cache import PromptCache

NUCLEI_PER_MM2 = 42 / (256 * 0.25 / 1000) ** 2  # CoNSeP patches: 42 nuclei per 256² at 0.25 µm/px, on average
SPACING_UM = 3.0


def density_layout(size: int, mpp: float, classes: list[str], seed: int = 0) -> Layout:
    """A size² layout at `mpp` with CoNSeP's mean density, classes in equal shares, nuclei >= 3 µm apart."""
    n = int(round(NUCLEI_PER_MM2 * (size * mpp / 1000) ** 2))
    ids = np.arange(n) % (len(classes) - 1) + 1
    template = Layout.from_arrays(size, size, classes, np.zeros((n, 2)), ids, mpp=mpp, tissue="colon")
    return random_layout(template, SPACING_UM / mpp, np.random.default_rng(seed))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="checkpoints/default")
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256], help="layout side in px at 0.25 µm/px")
    ap.add_argument("--layout", help="time this layout JSON instead of density layouts")
    ap.add_argument("--guidance", type=float, default=SamplingSettings.guidance)
    ap.add_argument("--sampler", default=SamplingSettings.sampler)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default="benchmarks/results/sample_latency.json")
    ap.add_argument("--prompt-cache", help="answer prompts from this file (cosyn prompt-cache) instead of "
                    "the text encoder, e.g. on a GPU machine without the encoder package")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    pipe = CoSynPipeline.from_pretrained(args.checkpoint, device=args.device,
                                         text_encoder=PromptCache(args.prompt_cache) if args.prompt_cache else None)
    classes = list(pipe.class_set.names)
    layouts = ([Layout.load(args.layout)] if args.layout
               else [density_layout(s, 0.25, classes) for s in args.sizes])
    rows = []
    for layout in layouts:
        for steps in args.steps:
            row = time_sampling(pipe, layout, SamplingSettings(steps, args.guidance, args.sampler), args.runs)
            rows.append(row)
            print(json.dumps(row), flush=True)
    device = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    result = {"command": command, "checkpoint": args.checkpoint, "checkpoint_sha256": pipe.sha256,
              "device": device, "cpu": platform.processor() or platform.machine(), "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}\ncommand: {command}")


if __name__ == "__main__":
    main()
