"""The network: MONAI's FlexibleUNet with HoVer-Net's three outputs from one shared decoder.

HoVer-Net gives each branch its own decoder; one decoder with a 2 + 2 + K channel head costs a
third of the decoder compute on CPU and keeps the same targets, losses and post-processing.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.networks.nets import FlexibleUNet
from torch import nn

from cosyn.segmentation.config import SegmenterConfig

NP, HV, NC = "nucleus_prediction", "horizontal_vertical", "type_prediction"  # MONAI's HoVerNetBranch values


def build_net(config: SegmenterConfig) -> nn.Module:
    """Random initialisation: nothing is downloaded (`pretrained=False`)."""
    return FlexibleUNet(
        in_channels=3,
        out_channels=4 + config.num_classes,
        backbone=config.backbone,
        pretrained=False,
        decoder_channels=config.decoder_channels,
        spatial_dims=2,
    )


def branches(out: torch.Tensor, num_classes: int) -> dict[str, torch.Tensor]:
    """(B, 4 + K, H, W) → HoVer-Net's branches: NP logits (2), HV maps (2, horizontal first), NC logits (K)."""
    if out.shape[1] != 4 + num_classes:
        raise ValueError(f"expected {4 + num_classes} output channels, got {out.shape[1]}")
    return {NP: out[:, :2], HV: out[:, 2:4], NC: out[:, 4:]}


def image_to_input(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 → (B, 3, H, W) float in [-1, 1]."""
    t = torch.from_numpy(np.array(images, np.uint8))  # a copy: inputs may be read-only views
    return t.permute(0, 3, 1, 2).float() / 127.5 - 1.0
