"""Conversions between uint8 arrays and the refiner's tensors, and the smooth upsampling of a base triple."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def to_unit(images: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 (B, H, W, 3) → float (B, 3, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(np.stack(images))).float()
    return x.permute(0, 3, 1, 2) / 127.5 - 1.0


def from_unit(x: torch.Tensor) -> np.ndarray:
    """float (B, 3, H, W) in [-1, 1] → uint8 (B, H, W, 3)."""
    return ((x.float().clamp(-1, 1) + 1.0) * 127.5 + 0.5).byte().permute(0, 2, 3, 1).cpu().numpy()


def bicubic(image_lo: torch.Tensor, scale: int) -> torch.Tensor:
    """(B,3,h,w) in [-1,1] → (B,3,scale·h,scale·w), bicubic, clamped to the range."""
    size = (image_lo.shape[2] * scale, image_lo.shape[3] * scale)
    return F.interpolate(image_lo, size=size, mode="bicubic", align_corners=False).clamp(-1, 1)


def upsampled_inputs(image_lo: torch.Tensor, dist_lo: torch.Tensor, class_lo: torch.Tensor, num_classes: int,
                     scale: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Base image (B,3,h,w in [-1,1]), distance (B,1,h,w) and class ids (B,h,w) → their smooth upsamplings:
    bicubic image, bilinear distance, bilinear one-hot label (probabilities, not nearest-neighbour blocks)."""
    return (bicubic(image_lo, scale), *upsampled_labels(dist_lo, class_lo, num_classes, scale))


def upsampled_labels(dist_lo: torch.Tensor, class_lo: torch.Tensor, num_classes: int,
                     scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance (B,1,h,w) and class ids (B,h,w) → bilinear distance and bilinear one-hot probabilities."""
    size = (dist_lo.shape[2] * scale, dist_lo.shape[3] * scale)
    dist = F.interpolate(dist_lo, size=size, mode="bilinear", align_corners=False)
    onehot = F.one_hot(class_lo.long(), num_classes).permute(0, 3, 1, 2).float()
    return dist, F.interpolate(onehot, size=size, mode="bilinear", align_corners=False)
