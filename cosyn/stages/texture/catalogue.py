"""What the quilter searches: per source slide, the key of every background patch position (the
blurred colour and the nucleus layout on a coarse grid), built the first time a slide is used."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import faiss
import numpy as np

from cosyn.stages.texture.bank import TextureBank

KEY_CELL = 8  # a patch key samples the blurred tile every KEY_CELL px
KEY_BLUR = 4.0  # σ in px of the colour the keys compare: tissue layout, not nuclei or fibres
# Marking ink and pigment: darker than this in every channel. Stained tissue, the darkest nuclei included,
# never is (5 such pixels in the 4.2 M of the validation tiles); one training slide of CoNSeP has black
# ink over up to 82% of a tile, and quilted into an output with nuclei pasted on it, it was the first
# thing the realism judge flagged.
INK_LEVEL = 70
MAX_INK = 0.01  # a patch with more of its pixels ink than this is not indexed


@dataclass
class PatchIndex:
    """Every PATCH² position (on a stride) of one slide's tiles, with the key the quilter searches by."""

    tile: np.ndarray  # (M,) bank tile index
    yx: np.ndarray  # (M, 2) top-left corner in the tile
    keys: np.ndarray  # (M, D) float32
    patch: int
    search: faiss.IndexFlatL2 = field(init=False, repr=False)  # over `keys`, built once per slide

    def __post_init__(self) -> None:
        self.search = faiss.IndexFlatL2(self.keys.shape[1])
        self.search.add(self.keys)


def colour_key(blurred: np.ndarray, nucleus_fraction: np.ndarray, corners: np.ndarray, patch: int,
               nucleus_weight: float) -> np.ndarray:
    """Keys of the patches with top-left `corners` (M, 2): the blurred colour (0..1) and the fraction of
    nucleus pixels, each sampled on a KEY_CELL grid inside the patch."""
    offsets = np.arange(KEY_CELL // 2, patch, KEY_CELL)
    ys = corners[:, 0, None, None] + offsets[None, :, None]
    xs = corners[:, 1, None, None] + offsets[None, None, :]
    colour = blurred[ys, xs].reshape(len(corners), -1)
    nuclear = nucleus_fraction[ys, xs].reshape(len(corners), -1)
    return np.concatenate([colour, nucleus_weight * nuclear], 1).astype(np.float32)


def blurred_and_fraction(image: np.ndarray, nucleus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    blurred = cv2.GaussianBlur(image.astype(np.float32) / 255, (0, 0), KEY_BLUR)
    fraction = cv2.blur(nucleus.astype(np.float32), (KEY_CELL, KEY_CELL))
    return blurred, fraction


def ink_fraction(image: np.ndarray, corners: np.ndarray, patch: int) -> np.ndarray:
    """The fraction of ink pixels (INK_LEVEL) in each `patch`² window with top-left `corners` (M, 2)."""
    ink = cv2.integral((image.max(2) < INK_LEVEL).astype(np.uint8))
    y, x = corners[:, 0], corners[:, 1]
    return (ink[y + patch, x + patch] - ink[y, x + patch] - ink[y + patch, x] + ink[y, x]) / patch**2


def patch_index(bank: TextureBank, tiles: list[int], patch: int, stride: int, nucleus_weight: float,
                max_ink: float = MAX_INK) -> PatchIndex:
    tile_ids, corners, keys = [], [], []
    for t in tiles:
        tile = bank.tiles[t]
        h, w = tile.inst_map.shape
        if h < patch or w < patch:
            continue
        ys, xs = np.meshgrid(np.arange(0, h - patch + 1, stride), np.arange(0, w - patch + 1, stride), indexing="ij")
        yx = np.stack([ys.ravel(), xs.ravel()], 1)
        yx = yx[ink_fraction(tile.image, yx, patch) <= max_ink]
        if not len(yx):
            continue
        blurred, fraction = blurred_and_fraction(tile.image, tile.inst_map > 0)
        keys.append(colour_key(blurred, fraction, yx, patch, nucleus_weight))
        corners.append(yx)
        tile_ids.append(np.full(len(yx), t))
    if not tile_ids and max_ink < 1:  # every patch of these tiles is inked: quilt from them rather than fail
        return patch_index(bank, tiles, patch, stride, nucleus_weight, max_ink=1.0)
    return PatchIndex(np.concatenate(tile_ids), np.concatenate(corners), np.concatenate(keys), patch)
