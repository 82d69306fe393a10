"""Multinomial diffusion: distributions, schedule limits, step composition, loss, sampling."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from cosyn.model.diffusion.categorical import (
    MultinomialDiffusion,
    index_to_log_onehot,
    log_onehot_to_index,
)

K = 5


def cosine_alphas_cumprod(num_timesteps: int) -> torch.Tensor:
    scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2", num_train_timesteps=num_timesteps)
    return scheduler.alphas_cumprod


@pytest.fixture(scope="module")
def diffusion() -> MultinomialDiffusion:
    return MultinomialDiffusion(cosine_alphas_cumprod(1000), K)


@pytest.fixture(scope="module")
def short() -> MultinomialDiffusion:
    return MultinomialDiffusion(cosine_alphas_cumprod(10), K)


def random_log_onehot(shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    x = torch.randint(0, K, shape, generator=torch.Generator().manual_seed(seed))
    return index_to_log_onehot(x, K).to(dtype)


def assert_distribution(log_p: torch.Tensor, atol: float = 1e-5) -> None:
    p = log_p.exp()
    assert torch.isfinite(log_p).all()
    assert (p >= 0).all()
    torch.testing.assert_close(p.sum(dim=1), torch.ones_like(p[:, 0]), atol=atol, rtol=0)


def test_onehot_round_trip() -> None:
    x = torch.randint(0, K, (2, 4, 3))
    log_x = index_to_log_onehot(x, K)
    assert log_x.shape == (2, K, 4, 3) and log_x.dtype == torch.float32
    assert torch.equal(log_onehot_to_index(log_x), x)
    assert_distribution(log_x)


@pytest.mark.parametrize("t", [0, 1, 10, 250, 500, 900, 998, 999])
def test_q_marginal_and_posterior_are_distributions(diffusion: MultinomialDiffusion, t: int) -> None:
    log_x0, log_xt = random_log_onehot((3, 6, 6), 0), random_log_onehot((3, 6, 6), 1)
    assert_distribution(diffusion.q_probs_log(log_x0, t))
    assert_distribution(diffusion.q_posterior_log(log_x0, log_xt, t))
    soft_x0 = torch.log_softmax(torch.randn(3, K, 6, 6), dim=1)  # a model's prediction
    assert_distribution(diffusion.q_posterior_log(soft_x0, log_xt, t))


@pytest.mark.parametrize(("t", "s"), [(999, 998), (999, 0), (999, -1), (500, 100), (10, 9), (1, -1), (0, -1)])
def test_skip_posterior_is_distribution(diffusion: MultinomialDiffusion, t: int, s: int) -> None:
    log_x0, log_xt = random_log_onehot((2, 5, 5), 2), random_log_onehot((2, 5, 5), 3)
    assert_distribution(diffusion.q_posterior_skip_log(log_x0, log_xt, t, s))


def test_marginal_at_last_step_is_uniform(diffusion: MultinomialDiffusion) -> None:
    log_x0 = random_log_onehot((2, 8, 8), 4)
    probs = diffusion.q_probs_log(log_x0, diffusion.num_timesteps - 1).exp()
    assert (probs - 1 / K).abs().max() < 1e-3


def test_q_sample_at_last_step_is_uniform(diffusion: MultinomialDiffusion) -> None:
    log_x0 = index_to_log_onehot(torch.zeros(4, 64, 64, dtype=torch.long), K)  # all class 0
    x_t = diffusion.q_sample(log_x0, diffusion.num_timesteps - 1, torch.Generator().manual_seed(0))
    freqs = torch.bincount(log_onehot_to_index(x_t).flatten(), minlength=K).float() / x_t[:, 0].numel()
    assert (freqs - 1 / K).abs().max() < 0.02


def test_q_sample_at_first_step_keeps_x0(diffusion: MultinomialDiffusion) -> None:
    log_x0 = random_log_onehot((4, 32, 32), 5)
    x_t = diffusion.q_sample(log_x0, 0, torch.Generator().manual_seed(0))
    same = (log_onehot_to_index(x_t) == log_onehot_to_index(log_x0)).float().mean()
    assert same > 0.999


def test_q_sample_is_a_seeded_log_onehot(diffusion: MultinomialDiffusion) -> None:
    log_x0 = random_log_onehot((2, 16, 16), 6)
    t = torch.tensor([300, 700])
    a = diffusion.q_sample(log_x0, t, torch.Generator().manual_seed(7))
    b = diffusion.q_sample(log_x0, t, torch.Generator().manual_seed(7))
    c = diffusion.q_sample(log_x0, t, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a, index_to_log_onehot(log_onehot_to_index(a), K))


@pytest.mark.parametrize(("t", "s"), [(9, 5), (9, 0), (9, -1), (5, 3), (3, -1), (6, 0), (2, 0)])
def test_skip_posterior_equals_composed_single_steps(short: MultinomialDiffusion, t: int, s: int) -> None:
    # Markov chain: q(x_s | x_t, x_0) = Σ_{x_{t-1}} q(x_s | x_{t-1}, x_0) q(x_{t-1} | x_t, x_0).
    log_x0 = random_log_onehot((2, 3, 3), 8, torch.float64)
    log_xt = random_log_onehot((2, 3, 3), 9, torch.float64)
    step = short.q_posterior_log(log_x0, log_xt, t).exp()
    composed = torch.zeros_like(step)
    for k in range(K):
        log_x_prev = index_to_log_onehot(torch.full((2, 3, 3), k), K).double()
        composed += step[:, k : k + 1] * short.q_posterior_skip_log(log_x0, log_x_prev, t - 1, s).exp()
    skip = short.q_posterior_skip_log(log_x0, log_xt, t, s).exp()
    torch.testing.assert_close(composed, skip, atol=1e-10, rtol=0)


@pytest.mark.parametrize("t", [0, 1, 4, 9])
def test_skip_to_previous_step_is_single_step(short: MultinomialDiffusion, t: int) -> None:
    log_x0, log_xt = random_log_onehot((2, 4, 4), 10), random_log_onehot((2, 4, 4), 11)
    torch.testing.assert_close(short.q_posterior_skip_log(log_x0, log_xt, t, t - 1),
                               short.q_posterior_log(log_x0, log_xt, t))


def test_posterior_at_first_step_is_x0(diffusion: MultinomialDiffusion) -> None:
    log_x0, log_xt = random_log_onehot((2, 4, 4), 12), random_log_onehot((2, 4, 4), 13)
    torch.testing.assert_close(diffusion.q_posterior_log(log_x0, log_xt, 0).exp(), log_x0.exp())


def test_per_sample_timesteps_match_scalar_calls(diffusion: MultinomialDiffusion) -> None:
    log_x0, log_xt = random_log_onehot((3, 4, 4), 14), random_log_onehot((3, 4, 4), 15)
    t, s = torch.tensor([0, 400, 999]), torch.tensor([-1, 100, 998])
    batched = diffusion.q_posterior_skip_log(log_x0, log_xt, t, s)
    for i in range(3):
        single = diffusion.q_posterior_skip_log(log_x0[i : i + 1], log_xt[i : i + 1], int(t[i]), int(s[i]))
        torch.testing.assert_close(batched[i : i + 1], single)


def test_loss_is_nonnegative_per_sample(diffusion: MultinomialDiffusion) -> None:
    log_x0 = random_log_onehot((4, 8, 8), 16)
    t = torch.tensor([0, 1, 500, 999])
    log_xt = diffusion.q_sample(log_x0, t, torch.Generator().manual_seed(0))
    logits = torch.randn(4, K, 8, 8, generator=torch.Generator().manual_seed(1)) * 3
    loss = diffusion.loss(logits, log_x0, log_xt, t, ce_weight=0.0)
    assert loss.shape == (4,)
    assert (loss >= -1e-6).all()  # a KL, exact up to float32 rounding where it is near 0 (t = T-1)


@pytest.mark.parametrize("ce_weight", [0.0, 0.1])
def test_loss_vanishes_for_a_perfect_prediction(diffusion: MultinomialDiffusion, ce_weight: float) -> None:
    log_x0 = random_log_onehot((4, 8, 8), 17)
    t = torch.tensor([0, 3, 500, 999])
    log_xt = diffusion.q_sample(log_x0, t, torch.Generator().manual_seed(0))
    loss = diffusion.loss(log_x0.clone(), log_x0, log_xt, t, ce_weight=ce_weight)
    assert loss.abs().max() < 1e-5


def test_loss_decreases_toward_the_truth(diffusion: MultinomialDiffusion) -> None:
    log_x0 = random_log_onehot((4, 8, 8), 18)
    t = torch.tensor([0, 10, 300, 900])
    log_xt = diffusion.q_sample(log_x0, t, torch.Generator().manual_seed(0))
    noise = torch.randn(4, K, 8, 8, generator=torch.Generator().manual_seed(2))
    onehot = log_x0.exp()
    for ce_weight in (0.0, 0.1):
        losses = [diffusion.loss(noise + c * onehot, log_x0, log_xt, t, ce_weight) for c in (0, 2, 5, 20)]
        for worse, better in zip(losses, losses[1:], strict=False):
            assert (better < worse).all()


def test_loss_gradients_are_finite(diffusion: MultinomialDiffusion) -> None:
    log_x0 = random_log_onehot((3, 6, 6), 19)
    t = torch.tensor([0, 1, 999])
    log_xt = diffusion.q_sample(log_x0, t, torch.Generator().manual_seed(0))
    logits = torch.randn(3, K, 6, 6, requires_grad=True)
    diffusion.loss(logits, log_x0, log_xt, t).sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_loss_under_bf16_autocast_matches_float32(diffusion: MultinomialDiffusion) -> None:
    log_x0 = random_log_onehot((2, 8, 8), 20)
    t = torch.tensor([5, 600])
    log_xt = diffusion.q_sample(log_x0, t, torch.Generator().manual_seed(0))
    logits = torch.randn(2, K, 8, 8)
    reference = diffusion.loss(logits, log_x0, log_xt, t)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = diffusion.loss(logits.bfloat16(), log_x0.bfloat16(), log_xt.bfloat16(), t)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, reference, rtol=0.02, atol=1e-3)


def test_outputs_keep_the_input_dtype(diffusion: MultinomialDiffusion) -> None:
    log_x0 = random_log_onehot((1, 4, 4), 21, torch.bfloat16)
    assert diffusion.q_probs_log(log_x0, 10).dtype == torch.bfloat16
    assert diffusion.q_sample(log_x0, 10).dtype == torch.bfloat16
    assert diffusion.q_posterior_log(log_x0, log_x0, 10).dtype == torch.bfloat16


def test_p_step_to_data_is_argmax_of_logits(diffusion: MultinomialDiffusion) -> None:
    logits = torch.randn(2, K, 8, 8)
    log_xt = random_log_onehot((2, 8, 8), 22)
    x0 = diffusion.p_step(logits, log_xt, 99, -1, torch.Generator().manual_seed(0))
    assert torch.equal(log_onehot_to_index(x0), logits.argmax(dim=1))
    torch.testing.assert_close(diffusion.p_posterior_log(logits, log_xt, 99, -1), logits.log_softmax(dim=1))


def test_p_step_samples_the_model_posterior(diffusion: MultinomialDiffusion) -> None:
    logits = torch.randn(1, K, 1, 1).expand(1, K, 64, 64).contiguous()
    log_xt = index_to_log_onehot(torch.full((1, 64, 64), 2), K)
    t, s = torch.tensor([500]), torch.tensor([250])
    expected = diffusion.p_posterior_log(logits, log_xt, t, s).exp()[0, :, 0, 0]
    assert_distribution(diffusion.p_posterior_log(logits, log_xt, t, s))
    seeds = [torch.Generator().manual_seed(i) for i in range(4)]
    draws = torch.cat([diffusion.p_step(logits, log_xt, t, s, generator) for generator in seeds])
    freqs = torch.bincount(log_onehot_to_index(draws).flatten(), minlength=K).float() / draws[:, 0].numel()
    assert (freqs - expected).abs().max() < 0.02
    again = diffusion.p_step(logits, log_xt, t, s, torch.Generator().manual_seed(0))
    assert torch.equal(again, draws[:1])
