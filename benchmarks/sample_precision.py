"""fp32 vs bf16 autocast (and channels_last) for sampling one 256² layout (128² canvas at 0.5 µm/px).

    python benchmarks/sample_precision.py --checkpoint checkpoints/default --runs 5

Median seconds of `--runs` timed samples after one warm-up, 25 dpm++ steps, guidance 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from cosyn.core.layout import Layout
from cosyn.model.pipeline import CoSynPipeline


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default="checkpoints/default")
    ap.add_argument("--layout", default="assets/layouts/colon_gland_epithelial.json")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    pipe = CoSynPipeline.from_pretrained(args.checkpoint)
    layout = Layout.load(args.layout)
    for channels_last in (False, True):
        pipe.model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        for bf16 in (False, True):
            times = []
            for i in range(args.runs + 1):
                t0 = time.perf_counter()
                pipe.sample(layout, steps=25, bf16=bf16)
                if i:
                    times.append(time.perf_counter() - t0)
            median = round(statistics.median(times), 3)
            print(json.dumps({"bf16": bf16, "channels_last": channels_last, "median_s": median,
                              "times_s": [round(t, 3) for t in times]}))


if __name__ == "__main__":
    main()
