"""The Gaussian half's own formulas, against diffusers' definitions and hand-worked values."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from cosyn.model.diffusion.gaussian import min_snr_weight, predict_start_from_v


def test_x0_is_recovered_from_a_diffusers_velocity():
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 3, 8, 8, generator=gen), torch.randn(4, 3, 8, 8, generator=gen)
    t = torch.tensor([0, 250, 700, 999])
    x_t = sched.add_noise(x0, noise, t)
    v = sched.get_velocity(x0, noise, t)
    assert torch.allclose(predict_start_from_v(x_t, v, sched.alphas_cumprod[t]), x0, atol=1e-4)


def test_min_snr_weight_by_hand():
    # SNR 1, 9 and 1/9 with gamma 5: min(SNR, 5) / (SNR + 1)
    w = min_snr_weight(torch.tensor([0.5, 0.9, 0.1]), gamma=5.0)
    assert w.tolist() == pytest.approx([0.5, 0.5, 0.1])
