"""Torch Dataset for training: samples at the model's mpp, random crops, 8 dihedral transforms.

Every random choice is a function of (seed, global position), so a run resumed at position p
sees exactly the stream it would have seen, and ranks read disjoint positions.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from cosyn.core.classes import ClassSet
from cosyn.core.instances import instance_table
from cosyn.core.layout import Layout
from cosyn.core.maps import distance_map, point_map
from cosyn.core.resample import resample_image, resample_instances, resample_labels
from cosyn.data.sample import Sample
from cosyn.data.targets import structure_prompt


@dataclass
class PreparedTile:
    """A sample resampled to the working mpp, with its targets precomputed."""

    name: str
    source: str
    image: np.ndarray  # (H, W, 3) uint8
    class_map: np.ndarray  # (H, W) uint8
    dist: np.ndarray  # (H, W) float32
    points: np.ndarray  # (H, W) uint8
    tissue: str | None


def resample_sample(sample: Sample, mpp: float) -> Sample:
    """`sample` at `mpp` µm/px (cosyn.core.resample's rules; the annotated instances nearest), its instance
    table recomputed.

    The table is rebuilt from the resampled maps (majority class of each instance's pixels), so a
    nucleus that vanishes at the coarser scale leaves no centroid behind and every class agrees
    with the class map the segmenter learns from. A sample without mpp is taken to be at `mpp`.
    """
    factor = 1.0 if sample.mpp is None else sample.mpp / mpp
    h, w = max(1, round(sample.height * factor)), max(1, round(sample.width * factor))
    inst = resample_instances(sample.inst_map, h, w)
    cls = resample_labels(sample.class_map, h, w).astype(np.uint8)
    ids, centroids, classes = instance_table(inst, cls)
    return Sample(sample.name, resample_image(sample.image, h, w), inst, cls, ids, centroids, classes,
                  sample.classes, sample.tissue, mpp, sample.source)


def prepare_tile(sample: Sample, mpp: float | None) -> PreparedTile:
    """Resample to `mpp` (None: native) and compute distance and point maps."""
    s = sample if mpp is None else resample_sample(sample, mpp)
    return PreparedTile(
        name=s.name,
        source=s.source or s.name,
        image=s.image,
        class_map=s.class_map.astype(np.uint8),
        dist=distance_map(s.inst_map),
        points=point_map(s.centroids, s.inst_classes, s.height, s.width),
        tissue=s.tissue,
    )


def split_by_source(samples: Sequence[Sample], val_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Train / validation indices with whole source tiles (slides) on one side only."""
    sources = sorted({s.source or s.name for s in samples})
    n_val = min(len(sources) - 1, max(1, round(val_fraction * len(sources)))) if val_fraction > 0 else 0
    random.Random(seed).shuffle(sources)
    val_sources = set(sources[:n_val])
    val = [i for i, s in enumerate(samples) if (s.source or s.name) in val_sources]
    train = [i for i, s in enumerate(samples) if (s.source or s.name) not in val_sources]
    return train, val


def dihedral(arr: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 rotations/flips of the first two axes."""
    out = np.rot90(arr, k % 4, axes=(0, 1))
    return out[:, ::-1] if k >= 4 else out


class CropDataset(Dataset):
    """Item p → a random crop + dihedral transform of tile perm_epoch[p % n], seeded by p."""

    def __init__(
        self, tiles: Sequence[PreparedTile], classes: ClassSet, crop: int, mpp: float, seed: int = 0,
        augment: bool = True,
    ) -> None:
        if not tiles:
            raise ValueError("the training split is empty")
        small = [t.name for t in tiles if min(t.image.shape[:2]) < crop]
        if small:
            raise ValueError(f"crop {crop} is larger than tiles {small[:3]} at the working mpp")
        self.tiles, self.classes, self.crop, self.mpp = list(tiles), classes, crop, mpp
        self.seed, self.augment = seed, augment

    def __len__(self) -> int:
        return len(self.tiles)

    def tile_index(self, position: int) -> int:
        epoch, offset = divmod(position, len(self.tiles))
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.tiles))
        return int(perm[offset])

    def __getitem__(self, position: int) -> dict:
        tile = self.tiles[self.tile_index(position)]
        rng = np.random.default_rng([self.seed, position, 1])
        h, w = tile.image.shape[:2]
        y0, x0 = int(rng.integers(0, h - self.crop + 1)), int(rng.integers(0, w - self.crop + 1))
        k = int(rng.integers(0, 8)) if self.augment else 0
        sl = (slice(y0, y0 + self.crop), slice(x0, x0 + self.crop))
        image, cls, dist, pts = (dihedral(a[sl], k) for a in (tile.image, tile.class_map, tile.dist, tile.points))
        return {
            "image": torch.from_numpy(image.transpose(2, 0, 1).copy()),
            "class_map": torch.from_numpy(cls.astype(np.int64)),
            "dist": torch.from_numpy(dist.copy())[None],
            "points": torch.from_numpy(pts.astype(np.int64)),
            "prompt": self.prompt(pts, tile.tissue, random.Random(int(rng.integers(2**31)))),
            "position": position,
        }

    def prompt(self, pts: np.ndarray, tissue: str | None, rng: random.Random) -> str:
        rows, cols = np.nonzero(pts)
        layout = Layout.from_arrays(
            pts.shape[1], pts.shape[0], self.classes, np.stack([cols, rows], 1), pts[rows, cols],
            mpp=self.mpp, tissue=tissue,
        )
        return structure_prompt(layout, rng=rng)


class PositionSampler(Sampler[int]):
    """Endless global positions start, start+world, ... for one rank: disjoint across ranks."""

    def __init__(self, start: int, rank: int = 0, world: int = 1) -> None:
        self.start, self.rank, self.world = start, rank, world

    def __iter__(self) -> Iterator[int]:
        p = self.start * self.world + self.rank
        while True:
            yield p
            p += self.world
