"""Gaussian part (image + distance map): diffusers schedulers and the model's value spaces."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, SchedulerMixin, UniPCMultistepScheduler

DEFAULT_SCHEDULE: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    # v-prediction: stable at t = T-1 of the cosine schedule, where eps-prediction explodes
    # in multistep solvers (docs/model.md), and it converged faster in the measured probes.
    "prediction_type": "v_prediction",
}

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
