"""Training pairs for the refiner: a real tile at its native µm/px as the target, and the same tile
at the base model's µm/px, degraded, as the input (Imagen's noise-conditioning augmentation: the
refiner must not trust the base image's exact pixels, which at sampling time are the base model's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from cosyn.data.dataset import dihedral, resample_sample
from cosyn.data.sample import Sample
from cosyn.data.targets import distance_map, point_map
from cosyn.refiner.tensors import to_unit, upsampled_inputs


@dataclass
class RefinerTile:
    name: str
    source: str
    image_hi: np.ndarray  # (S·h, S·w, 3) uint8 at the output µm/px
    points_hi: np.ndarray  # (S·h, S·w) uint8 class id at each centroid
    image_lo: np.ndarray  # (h, w, 3) uint8 at the base model's µm/px
    class_lo: np.ndarray  # (h, w) uint8
    dist_lo: np.ndarray  # (h, w) float32


def refiner_tile(sample: Sample, base_mpp: float, scale: int) -> RefinerTile:
    """`sample` at base_mpp (input) and at base_mpp / scale (target)."""
    hi = resample_sample(sample, base_mpp / scale)
    lo = resample_sample(sample, base_mpp)
    h, w = lo.height, lo.width
    image_hi = cv2.resize(hi.image, (w * scale, h * scale), interpolation=cv2.INTER_AREA) \
        if hi.image.shape[:2] != (h * scale, w * scale) else hi.image
    return RefinerTile(
        name=sample.name, source=sample.source or sample.name, image_hi=image_hi,
        points_hi=point_map(hi.centroids, hi.inst_classes, h * scale, w * scale),
        image_lo=lo.image, class_lo=lo.class_map.astype(np.uint8), dist_lo=distance_map(lo.inst_map),
    )


@dataclass
class Degradation:
    """Ranges of the random degradation of the low-resolution input (per tile)."""

    blur_sigma: float = 1.0  # base px; the base model's images are soft
    blur_min: float = 0.0  # base px; > 0 never shows the refiner a sharp input, which it would only copy
    noise: float = 0.02  # of the [0, 1] range
    gain: float = 0.07  # per-channel multiplicative stain jitter
    offset: float = 0.03

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = image.astype(np.float32) / 255.0
        sigma = rng.uniform(min(self.blur_min, self.blur_sigma), self.blur_sigma)
        if sigma > 0.2:
            x = cv2.GaussianBlur(x, (0, 0), sigma)
        x = x * rng.uniform(1 - self.gain, 1 + self.gain, 3) + rng.uniform(-self.offset, self.offset)
        x = x + rng.normal(0.0, rng.uniform(0.0, self.noise), x.shape)
        return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def crop_pair(tile: RefinerTile, crop: int, scale: int, rng: np.random.Generator,
              degradation: Degradation | None) -> dict[str, np.ndarray]:
    """A random aligned crop (crop² at the output, (crop/scale)² at the input), dihedrally transformed."""
    small = crop // scale
    h, w = tile.class_lo.shape
    y, x = int(rng.integers(0, h - small + 1)), int(rng.integers(0, w - small + 1))
    k = int(rng.integers(0, 8))
    lo = (slice(y, y + small), slice(x, x + small))
    hi = (slice(y * scale, (y + small) * scale), slice(x * scale, (x + small) * scale))
    image_lo = tile.image_lo[lo] if degradation is None else degradation.apply(tile.image_lo[lo], rng)
    return {
        "image_hi": dihedral(tile.image_hi[hi], k).copy(), "points_hi": dihedral(tile.points_hi[hi], k).copy(),
        "image_lo": dihedral(image_lo, k).copy(), "class_lo": dihedral(tile.class_lo[lo], k).copy(),
        "dist_lo": dihedral(tile.dist_lo[lo], k).copy(),
    }


def batch_tensors(items: Sequence[dict[str, np.ndarray]], num_classes: int, scale: int) -> dict[str, torch.Tensor]:
    image_up, dist_up, probs = upsampled_inputs(
        to_unit([i["image_lo"] for i in items]),
        torch.from_numpy(np.stack([i["dist_lo"] for i in items]))[:, None],
        torch.from_numpy(np.stack([i["class_lo"] for i in items])), num_classes, scale)
    return {"target": to_unit([i["image_hi"] for i in items]), "image_up": image_up, "dist_up": dist_up,
            "probs": probs, "points": torch.from_numpy(np.stack([i["points_hi"] for i in items]).astype(np.int64))}
