"""What one `cosyn evaluate` run is asked to do: the sections and every knob, checked on creation."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from cosyn.evaluation.c2st import C2STConfig
from cosyn.model.ranges import Bounds, check_numbers
from cosyn.model.settings import SamplingSettings
from cosyn.segmentation import SegTrainConfig
from cosyn.training.config import TRAIN_RANGES, TrainConfig

SECTIONS = ("fidelity", "consistency", "realism", "downstream", "speed")
DEFAULT_SECTIONS = tuple(s for s in SECTIONS if s != "downstream")  # downstream needs --synthetic
# Each number's sane range (inclusive), checked on construction (n_layouts and synthetic_share when given).
EVAL_RANGES: dict[str, Bounds] = {
    "val_fraction": TRAIN_RANGES["val_fraction"], "split_seed": TRAIN_RANGES["seed"], "n_layouts": (1, 100_000),
    "samples_per_layout": (1, 64), "seed": (0, 2**63 - 1), "seeds": (1, 20), "synthetic_share": (0.0, 1.0),
    "speed_runs": (1, 100), "grid_rows": (1, 64),
}


@dataclass
class EvalConfig:
    checkpoint: str
    data: str
    out: str
    format: str = "auto"
    split: str = "val"
    val_fraction: float = TrainConfig.val_fraction
    split_seed: int = TrainConfig.seed
    n_layouts: int | None = None
    samples_per_layout: int = 1
    seed: int = 0
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    sections: tuple[str, ...] = DEFAULT_SECTIONS
    segmenter: str | None = None
    segmenter_train: SegTrainConfig = field(default_factory=SegTrainConfig)
    seeds: int = 3
    synthetic: str | None = None
    synthetic_share: float | None = None
    c2st: C2STConfig = field(default_factory=C2STConfig)  # the realism section's judge
    speed_runs: int = 5
    grid_rows: int = 8
    device: str = "cpu"  # for the pipeline and segmenter training

    def __post_init__(self) -> None:
        check_numbers(self, EVAL_RANGES, "evaluate options")
        unknown = set(self.sections) - set(SECTIONS)
        if unknown:
            raise ValueError(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
        if "downstream" in self.sections and not self.synthetic:
            raise ValueError("the downstream section needs --synthetic DIR (a `cosyn augment` output)")


def log(msg: str) -> None:
    print(f"[evaluate] {msg}", file=sys.stderr, flush=True)
