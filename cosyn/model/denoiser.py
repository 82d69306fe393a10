"""JointDenoiser: one network that denoises image, distance map and label together.

Layout of the computation (CoSyn; docs/model.md):
    stem(noisy image + distance) + embed(noisy label) + P      → diffusers UNet2DConditionModel
    head(concat(UNet features, P))                             → v_image (3), v_dist (1), label x0-logits (K)
where P are the features of a small residual encoder of the class-wise point heatmaps,
added at the input and concatenated again before the output (CoSyn's "early and late"),
and the prompt tokens enter through the UNet's cross-attention.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from cosyn.io.fileio import dataclass_from_dict
from cosyn.model.points import point_heatmaps
from cosyn.model.ranges import Bounds, range_problems, shown

GAUSSIAN_CHANNELS = 4  # RGB + distance

# The architecture's sane ranges (inclusive; each block width on its own), checked before a module is built: a
# crafted config.json must not allocate gigabytes before its shapes are compared. At the limits (5 levels of
# 1024 channels, 4 layers each) the denoiser has about 1.2 billion parameters (tests/test_pipeline.py).
DENOISER_RANGES: dict[str, Bounds] = {
    "num_classes": (2, 64), "block_out_channels": (8, 1024), "layers_per_block": (1, 4),
    "attention_head_dim": (1, 256), "cross_attention_dim": (8, 4096), "point_sigma": (0.1, 32.0),
    "point_encoder_blocks": (0, 8), "norm_num_groups": (1, 64),
}
MAX_LEVELS = 5  # UNet resolutions: the canvas stride is 2 ** (levels - 1)


@dataclass
class DenoiserConfig:
    num_classes: int = 5
    block_out_channels: tuple[int, ...] = (32, 64, 128, 128)
    attention_levels: tuple[bool, ...] = (False, False, True, True)
    layers_per_block: int = 1
    attention_head_dim: int = 8
    cross_attention_dim: int = 384
    point_sigma: float = 2.0
    point_encoder_blocks: int = 2
    norm_num_groups: int = 8

    def __post_init__(self) -> None:
        bad = _type_problems(self)
        if bad:
            raise ValueError("; ".join(bad))
        self.block_out_channels = tuple(self.block_out_channels)
        self.attention_levels = tuple(self.attention_levels)
        bad = range_problems(asdict(self), DENOISER_RANGES)
        if not 1 <= len(self.block_out_channels) <= MAX_LEVELS:
            bad.append(f"block_out_channels has {len(self.block_out_channels)} levels; 1..{MAX_LEVELS} are allowed")
        if bad:
            raise ValueError("; ".join(bad))
        if len(self.block_out_channels) != len(self.attention_levels):
            raise ValueError("block_out_channels and attention_levels must have the same length")
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError(f"every block width must be divisible by norm_num_groups={self.norm_num_groups}")

    @property
    def stride(self) -> int:
        """Canvas sides must be multiples of this."""
        return 2 ** (len(self.block_out_channels) - 1)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DenoiserConfig:
        return dataclass_from_dict(cls, d, "denoiser config keys")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _type_problems(cfg: DenoiserConfig) -> list[str]:
    """Whole numbers where the architecture counts, true/false per attention level, a finite sigma."""
    def whole(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    bad = [f"{k}={shown(getattr(cfg, k))} must be a whole number"
           for k in ("num_classes", "layers_per_block", "attention_head_dim", "cross_attention_dim",
                     "point_encoder_blocks", "norm_num_groups") if not whole(getattr(cfg, k))]
    if not isinstance(cfg.block_out_channels, (list, tuple)) or not all(whole(c) for c in cfg.block_out_channels):
        bad.append(f"block_out_channels={shown(cfg.block_out_channels)} must be a list of whole numbers")
    levels = cfg.attention_levels
    if not isinstance(levels, (list, tuple)) or not all(isinstance(a, bool) for a in levels):
        bad.append(f"attention_levels={shown(cfg.attention_levels)} must be a list of true/false")
    if isinstance(cfg.point_sigma, bool) or not isinstance(cfg.point_sigma, (int, float)):
        bad.append(f"point_sigma={shown(cfg.point_sigma)} must be a number")  # NaN and inf fail its range
    return bad


class ResBlock(nn.Module):
    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(groups, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(groups, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class PointEncoder(nn.Module):
    """Class-wise point map → features at full resolution."""

    def __init__(self, cfg: DenoiserConfig) -> None:
        super().__init__()
        c = cfg.block_out_channels[0]
        self.num_classes = cfg.num_classes
        self.sigma = cfg.point_sigma
        self.proj = nn.Conv2d(cfg.num_classes - 1, c, 3, padding=1)
        self.blocks = nn.Sequential(*[ResBlock(c, cfg.norm_num_groups) for _ in range(cfg.point_encoder_blocks)])

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.proj(point_heatmaps(points, self.num_classes, self.sigma)))


@dataclass
class DenoiserOutput:
    v_image: torch.Tensor
    v_dist: torch.Tensor
    label_logits: torch.Tensor


class JointDenoiser(nn.Module):
    def __init__(self, cfg: DenoiserConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c0 = cfg.block_out_channels[0]
        self.gauss_in = nn.Conv2d(GAUSSIAN_CHANNELS, c0, 3, padding=1)
        self.label_in = nn.Conv2d(cfg.num_classes, c0, 3, padding=1)
        self.points = PointEncoder(cfg)
        down = ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in cfg.attention_levels]
        up = ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.attention_levels)]
        self.unet = UNet2DConditionModel(
            sample_size=64,
            in_channels=c0,
            out_channels=c0,
            down_block_types=tuple(down),
            up_block_types=tuple(up),
            block_out_channels=cfg.block_out_channels,
            layers_per_block=cfg.layers_per_block,
            cross_attention_dim=cfg.cross_attention_dim,
            attention_head_dim=cfg.attention_head_dim,
            norm_num_groups=cfg.norm_num_groups,
        )
        self.head = nn.Sequential(
            nn.Conv2d(2 * c0, c0, 3, padding=1),
            nn.GroupNorm(cfg.norm_num_groups, c0),
            nn.SiLU(),
            nn.Conv2d(c0, GAUSSIAN_CHANNELS + cfg.num_classes, 3, padding=1),
        )

    def forward(
        self,
        x_image: torch.Tensor,
        x_dist: torch.Tensor,
        x_label: torch.Tensor,
        points: torch.Tensor,
        t: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor | None = None,
    ) -> DenoiserOutput:
        """x_image (B,3,H,W) and x_dist (B,1,H,W) noisy; x_label (B,K,H,W) one-hot of the noisy
        label; points (B,H,W) class ids at centroids; t (B,); text (B,L,D)."""
        p = self.points(points)
        h = self.gauss_in(torch.cat([x_image, x_dist], dim=1)) + self.label_in(x_label) + p
        u = self.unet(h, t, encoder_hidden_states=text, encoder_attention_mask=text_mask).sample
        out = self.head(torch.cat([u, p], dim=1))
        return DenoiserOutput(out[:, :3], out[:, 3:4], out[:, 4:])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
