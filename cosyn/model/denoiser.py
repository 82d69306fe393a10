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

GAUSSIAN_CHANNELS = 4  # RGB + distance


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
        self.block_out_channels = tuple(int(c) for c in self.block_out_channels)
        self.attention_levels = tuple(bool(a) for a in self.attention_levels)
        if len(self.block_out_channels) != len(self.attention_levels):
            raise ValueError("block_out_channels and attention_levels must have the same length")
        if self.num_classes < 2:
            raise ValueError("num_classes counts background plus at least one nucleus class")
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
