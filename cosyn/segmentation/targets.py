"""HoVer-Net's training targets and the random crops the segmenter learns from.

The HV maps (each nucleus pixel's horizontal and vertical offset from its nucleus' centroid,
scaled to [-1, 1] on each side) come from MONAI's `ComputeHoVerMaps`, computed once per whole
tile so a nucleus cut by a crop keeps its true centroid, as HoVer-Net crops its targets. A
dihedral transform of a crop then also turns the offset vectors: `dihedral_hv`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.transforms import ComputeHoVerMaps

from cosyn.data.dataset import dihedral, resample_sample
from cosyn.data.sample import Sample
from cosyn.segmentation.model import HV, NC, NP, image_to_input


def hv_maps(inst_map: np.ndarray) -> np.ndarray:
    """(H, W) instance map → (H, W, 2) float32: horizontal, vertical offset maps (0 on background)."""
    hv = ComputeHoVerMaps(dtype="float32")(np.asarray(inst_map, np.int32)[None])
    return np.ascontiguousarray(np.asarray(hv).transpose(1, 2, 0))


def dihedral_hv(hv: np.ndarray, k: int) -> np.ndarray:
    """`dihedral(hv, k)` with the offset vectors turned too: a quarter turn of np.rot90 maps
    (h, v) → (v, -h) and the column flip negates h, so hv_maps(dihedral(inst)) == dihedral_hv(hv_maps(inst))."""
    out = np.rot90(hv, k % 4, axes=(0, 1))
    h, v = out[..., 0], out[..., 1]
    for _ in range(k % 4):
        h, v = v, -h
    if k >= 4:
        h, v = -h[:, ::-1], v[:, ::-1]
    return np.stack([h, v], -1)


@dataclass
class SegTile:
    """One training tile at the segmenter's mpp: image, class map and HV maps."""

    image: np.ndarray  # (H, W, 3) uint8
    class_map: np.ndarray  # (H, W) uint8, 0 = background
    hv: np.ndarray  # (H, W, 2) float32

    @classmethod
    def from_sample(cls, sample: Sample, mpp: float) -> SegTile:
        s = resample_sample(sample, mpp)
        return cls(s.image, s.class_map.astype(np.uint8), hv_maps(s.inst_map))


def _padded(tile: SegTile, size: int) -> SegTile:
    """Tiles smaller than the crop are padded: image with its median colour, targets with background."""
    h, w = tile.class_map.shape
    ph, pw = max(0, size - h), max(0, size - w)
    if not ph and not pw:
        return tile
    fill = np.median(tile.image.reshape(-1, 3), axis=0).astype(np.uint8)
    image = np.empty((h + ph, w + pw, 3), np.uint8)
    image[:] = fill
    image[:h, :w] = tile.image
    pad = ((0, ph), (0, pw))
    return SegTile(image, np.pad(tile.class_map, pad), np.pad(tile.hv, (*pad, (0, 0))))


def random_batch(
    tiles: Sequence[SegTile], rng: np.random.Generator, crop: int, batch: int, num_classes: int,
    weights: np.ndarray | None = None, jitter: float = 0.1,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """`batch` random crops, each with a random dihedral transform and per-channel colour jitter.

    Returns the network input and HoVer-Net's targets: NP and NC one-hot (B, C, H, W), HV (B, 2, H, W)."""
    picks = rng.choice(len(tiles), size=batch, p=weights)
    images, classes, hvs = [], [], []
    for i in picks:
        tile = _padded(tiles[int(i)], crop)
        h, w = tile.class_map.shape
        y, x, k = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1)), int(rng.integers(0, 8))
        sl = (slice(y, y + crop), slice(x, x + crop))
        # Colour jitter: scanners and stains differ between slides more than between crops of one.
        gain, offset = rng.normal(1.0, jitter, 3), rng.normal(0.0, 160 * jitter, 3)
        images.append(np.clip(dihedral(tile.image[sl], k) * gain + offset, 0, 255).astype(np.uint8))
        classes.append(dihedral(tile.class_map[sl], k))
        hvs.append(dihedral_hv(tile.hv[sl], k))
    cls = torch.from_numpy(np.stack(classes).astype(np.int64))
    nc = torch.nn.functional.one_hot(cls, num_classes).permute(0, 3, 1, 2).float()
    np_target = torch.stack([(cls == 0).float(), (cls > 0).float()], 1)
    hv = torch.from_numpy(np.stack(hvs).transpose(0, 3, 1, 2).copy())
    return image_to_input(np.stack(images)), {NP: np_target, HV: hv, NC: nc}
