"""Stain statistics and stain transfer (Reinhard et al. 2001, in L*a*b*), on stained tissue only.

A texture-stage output is moved from the stain of the training slide it was quilted from to that of a slide
drawn at random. Given a reference (the slide a layout came from, or a user's own tiles) it takes that stain
instead: most of what tells training tiles from another lab's or patient's tiles is stain, not texture
(docs/model.md).

Statistics are over stained pixels only (EMPTY_LEVEL), so a tile of fat or lumen does not read as a pale
stain; the transfer leaves unstained pixels as they are, and it never raises a spread (a colour channel
stretched past what its slide had turns white regions green), so only the mean moves freely.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

EMPTY_LEVEL = 200  # a pixel brighter than this in every channel is unstained: fat, lumen, background
EMPTY_RAMP = 40  # px values over which the transfer fades out above EMPTY_LEVEL
MIN_SPREAD_RATIO = 0.5  # a reference may narrow a channel's spread to half, never widen it
SUBSAMPLE = 4  # statistics from every 4th pixel in each direction


@dataclass(frozen=True)
class Stain:
    """L*a*b* mean and spread (standard deviation) of stained pixels."""

    mean: tuple[float, float, float]
    spread: tuple[float, float, float]

    def __post_init__(self) -> None:
        values = (*self.mean, *self.spread)
        if len(self.mean) != 3 or len(self.spread) != 3 or not all(math.isfinite(v) for v in values):
            raise ValueError(f"a stain is 3 finite L*a*b* means and 3 spreads, not {self.mean}, {self.spread}")
        if min(self.spread) <= 0:
            raise ValueError(f"a stain's spreads must be > 0, not {self.spread}")

    @classmethod
    def of(cls, images: Sequence[np.ndarray]) -> Stain:
        """The stain of RGB uint8 `images` taken together."""
        pixels = [im[::SUBSAMPLE, ::SUBSAMPLE].reshape(-1, 3) for im in images]
        stained = np.concatenate([p[p.min(1) <= EMPTY_LEVEL] for p in pixels]) if pixels else np.zeros((0, 3))
        if len(stained) < 16:
            raise ValueError("too few stained pixels to measure a stain (the images are empty or white)")
        lab = lab_of(stained[None].astype(np.uint8)).reshape(-1, 3)
        return cls(tuple(float(v) for v in lab.mean(0)), tuple(float(max(v, 1e-3)) for v in lab.std(0)))

    @classmethod
    def average(cls, stains: Sequence[Stain]) -> Stain:
        """The mean of several stains' means and of their spreads: the typical slide's stain."""
        return cls(tuple(np.mean([s.mean for s in stains], 0).tolist()),
                   tuple(np.mean([s.spread for s in stains], 0).tolist()))

    @classmethod
    def of_files(cls, paths: Sequence[str | Path]) -> Stain:
        """The stain of image files taken together (any format Pillow reads, as RGB); errors name the file."""
        images = []
        for path in paths:
            try:
                with Image.open(path) as im:
                    images.append(np.asarray(im.convert("RGB")))
            except (OSError, ValueError, Image.DecompressionBombError) as e:
                raise ValueError(f"{path}: cannot read a stain reference image ({e})") from None
        try:
            return cls.of(images)
        except ValueError as e:
            raise ValueError(f"{', '.join(map(str, paths))}: {e}") from None

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": [round(v, 4) for v in self.mean], "spread": [round(v, 4) for v in self.spread]}

    @classmethod
    def from_dict(cls, d: Any) -> Stain:
        if not isinstance(d, dict) or set(d) != {"mean", "spread"}:
            raise ValueError(f"a stain is {{'mean': [L, a, b], 'spread': [L, a, b]}}, not {d!r}")
        try:
            return cls(tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["spread"]))
        except (TypeError, ValueError) as e:
            raise ValueError(f"bad stain {d!r}: {e}") from None


def lab_of(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)


def restain(image: np.ndarray, source: Stain, target: Stain) -> np.ndarray:
    """`image`, stained like `source`, moved to `target`'s stain (the statistics of the stains rather than of
    the image, so an image that is mostly empty stays mostly empty)."""
    lab = lab_of(image)
    matched = (lab - np.array(source.mean)) / np.array(source.spread) * np.array(target.spread) + np.array(target.mean)
    rgb = cv2.cvtColor(matched.astype(np.float32), cv2.COLOR_LAB2RGB)
    return np.clip(rgb * 255, 0, 255).round().astype(np.uint8)


def toward(image: np.ndarray, source: Stain, reference: Stain) -> np.ndarray:
    """`image` (RGB uint8, stained like `source`) in `reference`'s stain: its mean in full, its spread only
    where the reference's is narrower (down to MIN_SPREAD_RATIO); unstained pixels stay as they are."""
    ratio = np.clip(np.array(reference.spread) / np.array(source.spread), MIN_SPREAD_RATIO, 1.0)
    target = Stain(reference.mean, tuple(float(v) for v in np.array(source.spread) * ratio))
    stained = 1 - np.clip((image.min(2).astype(np.float32) - EMPTY_LEVEL) / EMPTY_RAMP, 0, 1)[..., None]
    out = stained * restain(image, source, target) + (1 - stained) * image
    return np.clip(out, 0, 255).round().astype(np.uint8)
