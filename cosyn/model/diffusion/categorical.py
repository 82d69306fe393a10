"""Multinomial diffusion for the label map (Hoogeboom et al. 2021, "Argmax flows
and multinomial diffusion"), with D3PM's hybrid loss (Austin et al. 2021).

    q(x_t | x_{t-1}) = Cat((1 - β_t) x_{t-1} + β_t / K)
    q(x_t | x_0)     = Cat(ᾱ_t x_0 + (1 - ᾱ_t) / K)
    q(x_s | x_t, x_0) ∝ [α_{t|s} x_t + (1 - α_{t|s}) / K] ⊙ [ᾱ_s x_0 + (1 - ᾱ_s) / K],  α_{t|s} = ᾱ_t / ᾱ_s

ᾱ_t is the Gaussian part's `alphas_cumprod[t]`, t = 0 .. T-1; x_0 (clean data) sits at
t = -1 with ᾱ_{-1} = 1, so the schedule is stored shifted by one and indexed at t + 1.

All distributions are log-probabilities shaped (B, K, H, W) (any spatial shape works);
timesteps are (B,) long tensors or a Python int. The model predicts x_0-logits and its
posterior is q(x_s | x_t, softmax(logits)), which lets a sampler skip steps.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

Timesteps = torch.Tensor | int

# Log of the zero entries of a one-hot: finite, so that log-space sums never meet
# -inf - (-inf), yet exp() of it is negligible against any probability we compute.
LOG_ZERO = math.log(1e-30)


def index_to_log_onehot(x: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, H, W) class ids -> (B, K, H, W) float32 log one-hot, zeros clipped to LOG_ZERO."""
    onehot = F.one_hot(x.long(), num_classes).movedim(-1, 1)
    return torch.where(onehot.bool(), 0.0, LOG_ZERO).float()


def log_onehot_to_index(log_x: torch.Tensor) -> torch.Tensor:
    return log_x.argmax(dim=1)


def log_1_min_a(log_a: torch.Tensor) -> torch.Tensor:
    """log(1 - a) from log a; expm1 keeps precision where a is close to 1."""
    return torch.log(-torch.expm1(log_a))


def log_normalize(log_x: torch.Tensor) -> torch.Tensor:
    return log_x - torch.logsumexp(log_x, dim=1, keepdim=True)


def log_categorical(log_x: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """E_{x}[log p] per pixel: the negative cross-entropy of p against x."""
    return (log_x.exp() * log_p).sum(dim=1)


def kl_categorical(log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    return (log_q.exp() * (log_q - log_p)).sum(dim=1)


def gumbel_argmax(log_probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample class ids from Cat(exp(log_probs)) by the Gumbel-max trick."""
    # Draw on the generator's device (e.g. a CPU generator for a CUDA tensor), as diffusers does.
    device = generator.device if generator is not None else log_probs.device
    u = torch.rand(log_probs.shape, generator=generator, device=device, dtype=torch.float32)
    u = u.to(log_probs.device).clamp(1e-20, 1.0 - 1e-7)
    gumbel = -torch.log(-torch.log(u))
    return (log_probs.float() + gumbel).argmax(dim=1)


def _per_sample(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) with `ndim` dims, to broadcast over (B, K, H, W)."""
    return x.view(-1, *([1] * (ndim - 1)))


def _maths(x: torch.Tensor) -> torch.Tensor:
    """Half-precision inputs (e.g. bf16 autocast logits) are lifted to float32 for the maths."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


class MultinomialDiffusion(nn.Module):
    """Categorical diffusion over `num_classes` label classes on a shared ᾱ schedule."""

    def __init__(self, alphas_cumprod: torch.Tensor, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_timesteps = len(alphas_cumprod)
        log_alpha_bar = F.pad(alphas_cumprod.double().log(), (1, 0), value=0.0)  # [ᾱ_{-1}=1, ᾱ_0, ...]
        # Derived from the schedule, which is saved in the config, so kept out of state_dict.
        self.register_buffer("log_alpha_bar", log_alpha_bar, persistent=False)
        self.register_buffer("log_1_min_alpha_bar", log_1_min_a(log_alpha_bar), persistent=False)

    # -- helpers -------------------------------------------------------------------------

    def _timesteps(self, t: Timesteps, like: torch.Tensor) -> torch.Tensor:
        if isinstance(t, int):
            return torch.full((like.shape[0],), t, dtype=torch.long, device=like.device)
        return t.to(device=like.device, dtype=torch.long)

    def _at(self, buffer: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """buffer[t + 1] in float64 (the schedule is stored shifted by one), broadcastable to `like`."""
        return _per_sample(buffer.to(t.device)[t + 1], like.dim())

    def _log_mix(self, log_x: torch.Tensor, log_a: torch.Tensor, log_1_min_a: torch.Tensor) -> torch.Tensor:
        """log(a x + (1 - a) / K): keep x with probability a, else resample uniformly."""
        log_a, log_1_min_a = log_a.to(log_x), log_1_min_a.to(log_x)
        return torch.logaddexp(log_x + log_a, log_1_min_a - math.log(self.num_classes))

    # -- forward process -----------------------------------------------------------------

    def q_probs_log(self, log_x0: torch.Tensor, t: Timesteps) -> torch.Tensor:
        """log q(x_t | x_0) = log(ᾱ_t x_0 + (1 - ᾱ_t) / K)."""
        t = self._timesteps(t, log_x0)
        log_probs = self._log_mix(_maths(log_x0), self._at(self.log_alpha_bar, t, log_x0),
                                  self._at(self.log_1_min_alpha_bar, t, log_x0))
        return log_probs.to(log_x0.dtype)

    def q_sample(self, log_x0: torch.Tensor, t: Timesteps,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Log one-hot x_t ~ q(x_t | x_0)."""
        x_t = gumbel_argmax(self.q_probs_log(log_x0, t), generator)
        return index_to_log_onehot(x_t, self.num_classes).to(log_x0.dtype)

    def q_posterior_skip_log(self, log_x0: torch.Tensor, log_xt: torch.Tensor,
                             t: Timesteps, s: Timesteps) -> torch.Tensor:
        """log q(x_s | x_t, x_0) for -1 <= s < t; s = -1 is x_0 itself."""
        t, s = self._timesteps(t, log_xt), self._timesteps(s, log_xt)
        log_x0_, log_xt_ = _maths(log_x0), _maths(log_xt)
        log_alpha_ts = self._at(self.log_alpha_bar, t, log_xt) - self._at(self.log_alpha_bar, s, log_xt)
        # q(x_t | x_s) read as a function of x_s: the transition matrix is symmetric.
        log_likelihood = self._log_mix(log_xt_, log_alpha_ts, log_1_min_a(log_alpha_ts))
        log_prior = self._log_mix(log_x0_, self._at(self.log_alpha_bar, s, log_xt),
                                  self._at(self.log_1_min_alpha_bar, s, log_xt))
        log_posterior = log_normalize(log_likelihood + log_prior)
        # At s = -1 "x_s" is the data: return x_0 as given, so the model's p(x_0 | x_t) is
        # its own prediction softmax(logits) rather than that prediction reweighted by x_t.
        is_data = _per_sample(s == -1, log_xt.dim())
        return torch.where(is_data, log_normalize(log_x0_), log_posterior).to(log_x0.dtype)

    def q_posterior_log(self, log_x0: torch.Tensor, log_xt: torch.Tensor, t: Timesteps) -> torch.Tensor:
        """log q(x_{t-1} | x_t, x_0); at t = 0 this is log x_0."""
        t = self._timesteps(t, log_xt)
        return self.q_posterior_skip_log(log_x0, log_xt, t, t - 1)

    # -- reverse process -----------------------------------------------------------------

    def p_posterior_log(self, logits_x0: torch.Tensor, log_xt: torch.Tensor,
                        t: Timesteps, s: Timesteps | None = None) -> torch.Tensor:
        """log p(x_s | x_t) = log q(x_s | x_t, softmax(logits)); s defaults to t - 1."""
        t = self._timesteps(t, log_xt)
        s = t - 1 if s is None else s
        log_x0_hat = F.log_softmax(_maths(logits_x0), dim=1)
        return self.q_posterior_skip_log(log_x0_hat, log_xt, t, s)

    def p_step(self, logits_x0: torch.Tensor, log_xt: torch.Tensor, t: Timesteps, s: Timesteps,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Log one-hot x_s ~ p(x_s | x_t). At s = -1 it is the argmax of the predicted x_0:
        a deterministic last step, as sampling noise there would only add speckle."""
        s = self._timesteps(s, log_xt)
        log_probs = self.p_posterior_log(logits_x0, log_xt, t, s)
        sampled = gumbel_argmax(log_probs, generator)
        is_data = _per_sample(s == -1, sampled.dim())
        x_s = torch.where(is_data, log_onehot_to_index(log_probs), sampled)
        return index_to_log_onehot(x_s, self.num_classes).to(log_xt.dtype)

    # -- training ------------------------------------------------------------------------

    def loss(self, logits_x0: torch.Tensor, log_x0: torch.Tensor, log_xt: torch.Tensor,
             t: Timesteps, ce_weight: float = 0.1) -> torch.Tensor:
        """(B,) per-sample loss, pixel-averaged: L_{t-1} = KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t))
        for t > 0 and the decoder L_0 = -log p(x_0 | x_t) at t = 0, plus ce_weight times the
        cross-entropy of the x_0-logits. That auxiliary term (D3PM's hybrid loss) gives the
        logits a direct signal at every t; the KL alone barely depends on them at large t,
        where the posterior is near-uniform, so training converges slowly without it."""
        t = self._timesteps(t, log_xt)
        log_x0_ = _maths(log_x0)
        log_x0_hat = F.log_softmax(_maths(logits_x0), dim=1)
        log_true = self.q_posterior_log(log_x0_, log_xt, t)
        log_model = self.q_posterior_log(log_x0_hat, log_xt, t)
        kl = kl_categorical(log_true, log_model)
        decoder_nll = -log_categorical(log_x0_, log_model)
        is_decoder = _per_sample(t == 0, kl.dim())
        vb = torch.where(is_decoder, decoder_nll, kl).flatten(1).mean(dim=1)
        ce = -log_categorical(log_x0_, log_x0_hat).flatten(1).mean(dim=1)
        return vb + ce_weight * ce
