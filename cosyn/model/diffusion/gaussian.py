"""Gaussian part (image + distance map): diffusers schedulers and the model's value spaces."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, SchedulerMixin, UniPCMultistepScheduler

from cosyn.model.ranges import shown

DEFAULT_SCHEDULE: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    # v-prediction: stable at t = T-1 of the cosine schedule, where eps-prediction explodes
    # in multistep solvers (docs/model.md), and it converged faster in the measured probes.
    "prediction_type": "v_prediction",
}

# What a checkpoint's "schedule" may hold. The loss and the samplers are written for v-prediction, so that is
# the only prediction type; the step count is bounded (0 divided by zero, 10⁹ allocated a table of 10⁹ betas).
SCHEDULE_RANGES = {"num_train_timesteps": (2, 10_000)}
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
_BETA_BOUNDS = {"beta_start": (1e-6, 0.5), "beta_end": (1e-6, 0.999)}


def check_schedule(schedule: dict[str, Any]) -> None:
    """Refuse a noise schedule this code cannot train or sample with, naming the key and what is allowed."""
    if not isinstance(schedule, dict):
        raise ValueError(f"schedule must be an object, got {type(schedule).__name__}")
    known = {*SCHEDULE_RANGES, *_BETA_BOUNDS, "beta_schedule", "prediction_type"}
    unknown = sorted(set(schedule) - known)
    if unknown:
        raise ValueError(f"schedule: unknown keys {unknown}; known: {sorted(known)}")
    steps = schedule.get("num_train_timesteps", DEFAULT_SCHEDULE["num_train_timesteps"])
    low, high = SCHEDULE_RANGES["num_train_timesteps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or not low <= steps <= high:
        raise ValueError(f"schedule: num_train_timesteps={shown(steps)} must be a whole number in {low}..{high}")
    for key, (low, high) in _BETA_BOUNDS.items():
        v = schedule.get(key, low)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high:
            raise ValueError(f"schedule: {key}={shown(v)} must be a number in {low:g}..{high:g}")
    if schedule.get("beta_schedule", BETA_SCHEDULES[0]) not in BETA_SCHEDULES:
        raise ValueError(f"schedule: beta_schedule={shown(schedule['beta_schedule'])} must be one of "
                         f"{list(BETA_SCHEDULES)}")
    if schedule.get("prediction_type", "v_prediction") != "v_prediction":
        raise ValueError(f"schedule: prediction_type={shown(schedule['prediction_type'])} is not supported; "
                         "CoSyn trains and samples v_prediction")


SAMPLERS: dict[str, tuple[type, dict[str, Any]]] = {
    "ddim": (DDIMScheduler, {"timestep_spacing": "trailing", "clip_sample": False}),
    "dpm++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                            "timestep_spacing": "trailing", "lambda_min_clipped": -5.1}),
    "unipc": (UniPCMultistepScheduler, {"timestep_spacing": "trailing", "solver_order": 2}),
}


def training_scheduler(schedule: dict[str, Any]) -> DDPMScheduler:
    return DDPMScheduler(**schedule, clip_sample=False)


def sampling_scheduler(name: str, schedule: dict[str, Any]) -> SchedulerMixin:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")
    cls, extra = SAMPLERS[name]
    return cls(**schedule, **extra)


def image_to_model(image: torch.Tensor) -> torch.Tensor:
    """uint8 (B,3,H,W) → float in [-1, 1]."""
    return image.float() / 127.5 - 1.0


def dist_to_model(dist: torch.Tensor) -> torch.Tensor:
    """[0, 1] → [-1, 1], so background sits at -1 like black pixels do."""
    return dist.float() * 2.0 - 1.0


def model_to_image(x: torch.Tensor) -> np.ndarray:
    """(B,3,H,W) in [-1,1] → (B,H,W,3) uint8."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def model_to_dist(x: torch.Tensor) -> np.ndarray:
    """(B,1,H,W) in [-1,1] → (B,H,W) float32 in [0,1]."""
    return ((x.float().clamp(-1, 1) + 1) / 2)[:, 0].cpu().numpy()


def predict_start_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    a = alpha_bar.view(-1, 1, 1, 1).to(x_t.dtype)
    return a.sqrt() * x_t - (1 - a).sqrt() * v


def min_snr_weight(alpha_bar: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-γ weight for a v-prediction MSE (Hang et al. 2023): min(SNR, γ) / (SNR + 1)."""
    snr = alpha_bar / (1 - alpha_bar)
    return torch.clamp(snr, max=gamma) / (snr + 1)
