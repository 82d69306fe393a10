"""Section 5, speed: seconds per triple for the split's first layout (a 256² CoNSeP patch at
0.25 µm/px is a 128² canvas at the model's 0.5), median of N runs after one warm-up."""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict
from typing import Any

import torch

from cosyn.core.layout import Layout
from cosyn.model.pipeline import CoSynPipeline
from cosyn.model.settings import SamplingSettings


def time_sampling(pipe: CoSynPipeline, layout: Layout, sampling: SamplingSettings, runs: int = 5,
                  seed: int = 0) -> dict[str, Any]:
    """Wall seconds per triple (sampling + instance cutting), median of `runs` after one warm-up."""
    def once(s: int) -> float:
        t0 = time.perf_counter()
        pipe.sample(layout, steps=sampling.steps, guidance=sampling.guidance, seed=s, sampler=sampling.sampler)
        return time.perf_counter() - t0

    once(seed)
    times = [once(seed + 1 + i) for i in range(runs)]
    canvas = pipe.conform_layout(layout)
    return {"median_s": statistics.median(times), "times_s": [round(t, 3) for t in times], "runs": runs,
            "layout": f"{layout.width}x{layout.height} at {layout.mpp} µm/px, {len(layout.points)} points",
            "canvas": f"{canvas.width}x{canvas.height} at {canvas.mpp} µm/px", **asdict(sampling),
            "threads": torch.get_num_threads(), "load_average_1min": round(os.getloadavg()[0], 2)}
