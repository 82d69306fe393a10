"""Point conditioning as the denoiser sees it: class-wise Gaussian heatmaps of a point map.

Part of the model (the denoiser computes it on the fly from the point map of cosyn.core.maps)."""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F


def point_heatmaps(points: torch.Tensor, num_classes: int, sigma: float) -> torch.Tensor:
    """Class-wise Gaussian heatmaps (B, K-1, H, W) with peak 1 from a (B, H, W) point map.

    A single lit pixel is hard for a small conv stack to see from far away; a Gaussian of
    about a nucleus radius gives every pixel of the nucleus-to-be a graded signal.
    """
    onehot = F.one_hot(points.long(), num_classes).permute(0, 3, 1, 2)[:, 1:].float()
    kernel = _gaussian_kernel(float(sigma)).to(points.device)
    k = kernel.shape[-1]
    weight = kernel.expand(num_classes - 1, 1, k, k)
    blurred = F.conv2d(onehot, weight, padding=k // 2, groups=num_classes - 1)
    return blurred.clamp(max=1.0)


@lru_cache(maxsize=8)
def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(round(3 * sigma)))
    ax = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    return torch.outer(g, g)  # peak 1, so an isolated point keeps value 1 at its centre
