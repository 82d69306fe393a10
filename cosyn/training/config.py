"""Every training knob in one dataclass (nanoGPT-style), and the error a user must act on."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cosyn.io.fileio import dataclass_from_dict
from cosyn.model.ranges import Bounds, range_problems, shown

Log = Callable[[str], None]


class TrainingError(RuntimeError):
    """Training stopped for a reason the user must act on."""


# The sane range of every numeric option (inclusive), checked here and nowhere else. Past these a value is a
# mistake, not a choice: `lr=1e30` blew the weights up to 3e27 and exported them as inf.
TRAIN_RANGES: dict[str, Bounds] = {
    "steps": (1, 10_000_000), "batch": (1, 1024), "lr": (1e-12, 0.1), "warmup": (0, 10_000_000),
    "weight_decay": (0.0, 1.0), "crop": (8, 2048), "mpp": (0.01, 10.0), "val_fraction": (0.0, 0.9),
    "seed": (0, 2**32 - 1), "save_every": (1, 10_000_000), "keep": (1, 1000), "log_every": (1, 10_000_000),
    "preview_every": (0, 10_000_000), "preview_steps": (1, 1000), "ema_decay": (0.0, 0.99999),
    "text_drop": (0.0, 0.99), "point_drop": (0.0, 0.99), "w_image": (0.0, 100.0), "w_dist": (0.0, 100.0),
    "w_label": (0.0, 100.0), "min_snr_gamma": (0.1, 100.0), "ce_weight": (0.0, 100.0), "grad_clip": (0.0, 1e6),
    "max_bad_fraction": (0.0, 0.99), "time_limit": (0.0, 43_200.0),  # minutes: 30 days
}
# 0..os.cpu_count() where the run starts: `"workers": 100000` forked until the kernel killed the run
CPU_BOUND = ("threads", "workers")
TRAIN_REASONS = {"lr": "AdamW's step size: at 0 or below nothing is learnt, and usual values are 1e-5..1e-3"}


@dataclass
class TrainConfig:
    data: str = ""
    out: str = "runs/default"
    format: str = "auto"
    init: str | None = None
    steps: int = 10000
    batch: int = 8
    lr: float = 5e-4
    warmup: int = 200
    weight_decay: float = 0.0
    crop: int = 64
    mpp: float = 0.5
    val_fraction: float = 0.15
    seed: int = 0
    save_every: int = 250
    keep: int = 2
    log_every: int = 10
    preview_every: int = 500
    preview_steps: int = 10
    ema_decay: float = 0.999
    text_drop: float = 0.1
    point_drop: float = 0.0
    w_image: float = 1.0
    w_dist: float = 1.0
    w_label: float = 1.0
    min_snr_gamma: float = 5.0
    ce_weight: float = 1.0
    grad_clip: float = 1.0
    bf16: bool = True
    threads: int = 0
    max_bad_fraction: float = 0.1
    workers: int = 0
    time_limit: float = 0.0
    text_cache: str | None = None
    denoiser: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_types(self)
        bad = range_problems({k: getattr(self, k) for k in TRAIN_RANGES}, TRAIN_RANGES, TRAIN_REASONS)
        cpus = os.cpu_count() or 1
        for key in CPU_BOUND:
            value = getattr(self, key)
            if value > cpus:
                bad.append(f"{key}={shown(value)} is more than this machine's {cpus} CPUs: it must lie in 0..{cpus}")
            elif value < 0:
                bad.append(f"{key}={shown(value)} must lie in 0..{cpus} (this machine's CPU count)")
        if bad:
            raise ValueError(f"invalid training options: {'; '.join(bad)}")
        _check_denoiser(self.denoiser)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return dataclass_from_dict(cls, d, "training options")


def merged_config(*layers: dict[str, Any] | None) -> TrainConfig:
    """The one merge of training options: TrainConfig's defaults ← each layer in turn (a resumed run's
    recorded options, a --config file, then the flags or form fields given). A None value in a layer is
    "not given" and overrides nothing; the result is validated once, naming any bad option."""
    opts: dict[str, Any] = {}
    for layer in layers:
        opts.update({k: v for k, v in (layer or {}).items() if v is not None})
    return TrainConfig.from_dict(opts)


def read_options(path: str | Path) -> dict[str, Any]:
    """A JSON object of TrainConfig options from `path`; errors name the file."""
    try:
        opts = json.loads(Path(path).read_text())
    except (ValueError, RecursionError) as e:  # JSONDecodeError, and a number of over 4,300 digits
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(opts, dict):
        raise ValueError(f"{path}: expected a JSON object of training options, got {type(opts).__name__}")
    return opts


def _check_types(cfg: TrainConfig) -> None:
    """Numbers are numbers of the field's kind, and finite: `"lr": "1e-4"` or `--lr inf` must fail here, by
    name, not as a traceback later or as a run that trains NaN weights and exits 0."""
    bad = []
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if f.type == "bool" and not isinstance(v, bool):
            bad.append(f"{f.name}={shown(v)} must be true or false")
        elif f.type == "int" and (isinstance(v, bool) or not isinstance(v, int)):
            bad.append(f"{f.name}={shown(v)} must be a whole number")
        elif f.type == "float" and (isinstance(v, bool) or not isinstance(v, (int, float))
                                    or isinstance(v, float) and not math.isfinite(v)):
            bad.append(f"{f.name}={shown(v)} must be a finite number")
        elif f.type in ("str", "str | None") and not isinstance(v, str) and v is not None:
            bad.append(f"{f.name}={shown(v)} must be text")
    if not isinstance(cfg.denoiser, dict):
        bad.append(f"denoiser={shown(cfg.denoiser)} must be an object of denoiser options")
    if bad:
        raise ValueError(f"invalid training options: {'; '.join(bad)}")


def _check_denoiser(options: dict[str, Any]) -> None:
    """The architecture options, checked now (against any class count: the data sets it later), not after the
    data has been read."""
    from cosyn.model.denoiser import DenoiserConfig  # imports diffusers: only once the cheap checks passed

    try:
        DenoiserConfig.from_dict({**options, "num_classes": 2})
    except (TypeError, ValueError) as e:
        raise ValueError(f"invalid training options: denoiser: {e}") from None
