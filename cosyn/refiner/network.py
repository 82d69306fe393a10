"""The refiner: a small fully-convolutional U-Net that takes a base triple, upsampled to the layout's
µm/px, and returns the image with the texture the base model cannot afford (docs/model.md, "Refiner").

Input channels, all at the output resolution:
    upsampled base image (3) + upsampled distance (1) + upsampled label probabilities (K)
    + class-wise point heatmaps (K-1) + one noise channel (the texture's randomness)
    [+ noisy residual (3) + noise level (1) in the diffusion formulation]
Output: a residual added to the upsampled image, so an untrained refiner is the identity.

`PatchDiscriminator` is the label-conditioned PatchGAN (pix2pix / SPADE) of the adversarial recipe.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cosyn.io.fileio import dataclass_from_dict
from cosyn.model.points import point_heatmaps

FORMULATIONS = ("gan", "diffusion")


@dataclass
class RefinerConfig:
    num_classes: int = 5
    widths: tuple[int, ...] = (32, 64, 96)
    blocks: int = 2
    point_sigma: float = 4.0  # 2 px at the base model's 0.5 µm/px is 4 px at 0.25
    scale: int = 2  # output px per base px
    formulation: str = "gan"
    # > 0: the residual loses what a Gaussian of this σ (output px) keeps, so the refiner can add detail but
    # not move colour or coarse content (docs/model.md, "Refiner": the first refiners repainted content at
    # 16-64 px and added little below 4 px)
    residual_highpass: float = 0.0

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)
        if self.formulation not in FORMULATIONS:
            raise ValueError(f"formulation {self.formulation!r} is not one of {FORMULATIONS}")
        if self.num_classes < 2 or not self.widths or self.scale < 1:
            raise ValueError("refiner needs num_classes >= 2, at least one width and scale >= 1")
        if not 0 <= self.residual_highpass <= 16 or (self.residual_highpass and self.formulation != "gan"):
            raise ValueError(f"residual_highpass {self.residual_highpass} must lie in 0..16 px, and only the gan "
                             "formulation predicts an image residual it can filter")

    @property
    def stride(self) -> int:
        return 2 ** (len(self.widths) - 1)

    @property
    def in_channels(self) -> int:
        base = 3 + 1 + self.num_classes + (self.num_classes - 1) + 1
        return base + (4 if self.formulation == "diffusion" else 0)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RefinerConfig:
        return dataclass_from_dict(cls, d, "refiner config keys")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class _Res(nn.Module):
    """Norm-free residual block (ESRGAN drops normalisation: it flattens texture statistics)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.5 * self.b(F.leaky_relu(self.a(F.leaky_relu(x, 0.2)), 0.2))


class RefinerNet(nn.Module):
    def __init__(self, cfg: RefinerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        self.stem = nn.Conv2d(cfg.in_channels, w[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.enc = nn.ModuleList()
        for i, c in enumerate(w):
            self.down.append(nn.Identity() if i == 0 else nn.Conv2d(w[i - 1], c, 4, stride=2, padding=1))
            self.enc.append(nn.Sequential(*[_Res(c) for _ in range(cfg.blocks)]))
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(len(w) - 1, 0, -1):
            self.up.append(nn.Conv2d(w[i], w[i - 1], 3, padding=1))
            self.dec.append(nn.Sequential(nn.Conv2d(2 * w[i - 1], w[i - 1], 3, padding=1),
                                          *[_Res(w[i - 1]) for _ in range(cfg.blocks)]))
        self.out = nn.Conv2d(w[0], 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        """cond (B, in_channels, H, W) from `conditioning` → residual (B, 3, H, W)."""
        h = self.stem(cond)
        skips = []
        for down, enc in zip(self.down, self.enc, strict=True):
            h = enc(down(h))
            skips.append(h)
        skips.pop()
        for up, dec in zip(self.up, self.dec, strict=True):
            h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
            h = dec(torch.cat([F.leaky_relu(h, 0.2), skips.pop()], 1))
        residual = self.out(F.leaky_relu(h, 0.2))
        if self.cfg.residual_highpass:
            residual = residual - gaussian_blur(residual, self.cfg.residual_highpass)
        return residual

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def hinge_d(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's hinge loss (SPADE): real scores pushed above 1, fake below -1."""
    return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, C, H, W) blurred channel by channel with a separable Gaussian of `sigma` px (borders reflected)."""
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device) / sigma) ** 2)
    taps = taps / taps.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, taps.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, taps.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def conditioning(image_up: torch.Tensor, dist_up: torch.Tensor, label_probs: torch.Tensor,
                 points: torch.Tensor, cfg: RefinerConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """The generator's input stack. image_up (B,3,H,W) in [-1,1], dist_up (B,1,H,W) in [0,1],
    label_probs (B,K,H,W), points (B,H,W) class ids at the centroids, all at the output resolution."""
    heat = point_heatmaps(points, cfg.num_classes, cfg.point_sigma)
    noise = torch.randn(image_up.shape[0], 1, *image_up.shape[2:], generator=generator).to(image_up)
    return torch.cat([image_up, dist_up, label_probs, heat, noise], 1)


class PatchDiscriminator(nn.Module):
    """Label-conditioned PatchGAN with spectral norm; a score per ~46 px patch."""

    def __init__(self, num_classes: int, width: int = 48) -> None:
        super().__init__()
        sn = nn.utils.spectral_norm
        c_in = 3 + 1 + num_classes
        self.layers = nn.ModuleList([
            sn(nn.Conv2d(c_in, width, 4, stride=2, padding=1)),
            sn(nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)),
            sn(nn.Conv2d(2 * width, 4 * width, 4, stride=2, padding=1)),
            sn(nn.Conv2d(4 * width, 4 * width, 3, padding=1)),
        ])
        self.score = sn(nn.Conv2d(4 * width, 1, 3, padding=1))

    def forward(self, image: torch.Tensor, dist: torch.Tensor, label_probs: torch.Tensor) -> list[torch.Tensor]:
        """The intermediate features (for feature matching) and, last, the patch scores."""
        h = torch.cat([image, dist, label_probs], 1)
        feats = []
        for layer in self.layers:
            h = F.leaky_relu(layer(h), 0.2)
            feats.append(h)
        return [*feats, self.score(h)]
