"""Every training knob in one dataclass (nanoGPT-style), and the error a user must act on."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cosyn.io.fileio import dataclass_from_dict

Log = Callable[[str], None]


class TrainingError(RuntimeError):
    """Training stopped for a reason the user must act on."""


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
        positive = ("steps", "batch", "crop", "save_every", "keep", "log_every", "preview_steps")
        bad = [f"{k}={getattr(self, k)}" for k in positive if int(getattr(self, k)) < 1]
        bad += [f"{k}={getattr(self, k)}" for k in ("lr", "mpp") if not float(getattr(self, k)) > 0]
        bad += [f"{k}={getattr(self, k)}" for k in ("text_drop", "point_drop", "val_fraction", "max_bad_fraction")
                if not 0 <= float(getattr(self, k)) < 1]
        if self.preview_every < 0 or self.warmup < 0 or self.workers < 0 or self.time_limit < 0:
            bad.append(f"preview_every={self.preview_every}, warmup={self.warmup}, workers={self.workers}, "
                       f"time_limit={self.time_limit} must be >= 0")
        if bad:
            raise ValueError(f"invalid training options: {', '.join(bad)}")

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
    except json.JSONDecodeError as e:
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
            bad.append(f"{f.name}={v!r} must be true or false")
        elif f.type == "int" and (isinstance(v, bool) or not isinstance(v, int)):
            bad.append(f"{f.name}={v!r} must be a whole number")
        elif f.type == "float" and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            bad.append(f"{f.name}={v!r} must be a finite number")
        elif f.type in ("str", "str | None") and not isinstance(v, str) and v is not None:
            bad.append(f"{f.name}={v!r} must be text")
    if not isinstance(cfg.denoiser, dict):
        bad.append(f"denoiser={cfg.denoiser!r} must be an object of denoiser options")
    if bad:
        raise ValueError(f"invalid training options: {'; '.join(bad)}")
