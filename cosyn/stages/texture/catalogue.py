"""What the texture stage searches: every whole nucleus of the bank with its class, size, shape and
surroundings, and, per source slide, the keys of every background patch position.

Everything here is computed from the bank when the stage loads (vectorised with bincount, about a
second for the default bank), so the bank on disk holds only pixels and annotations.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi

from cosyn.stages.texture.bank import TextureBank

MARGIN = 3  # px of real surroundings carried with a pasted nucleus, so its edge blends into tissue
KEY_CELL = 8  # a patch key samples the blurred tile every KEY_CELL px
KEY_BLUR = 4.0  # σ in px of the colour the keys compare: tissue layout, not nuclei or fibres


@dataclass
class Nuclei:
    """One row per whole nucleus (not touching its tile's border) of the bank."""

    tile: np.ndarray  # (N,) tile index
    inst_id: np.ndarray  # (N,) id in that tile's instance map
    cls: np.ndarray  # (N,) class id
    box: np.ndarray  # (N, 4) y0, x0, y1, x1 of the crop: the nucleus' box grown by MARGIN
    log_area: np.ndarray  # (N,)
    elongation: np.ndarray  # (N,) 1 - minor/major axis, 0 for a circle
    theta: np.ndarray  # (N,) orientation of the major axis, radians in [-π/2, π/2), x right, y down
    ring: np.ndarray  # (N, 3) mean RGB of the MARGIN-px ring around the nucleus


def shape_moments(masks: np.ndarray, labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area, elongation and major-axis angle of each label 1..n of `labels` (0 = none), from second moments."""
    flat = labels.ravel()
    rows, cols = np.indices(labels.shape)
    x, y = cols.ravel().astype(np.float64), rows.ravel().astype(np.float64)
    w = masks.ravel().astype(np.float64)

    def total(v: np.ndarray) -> np.ndarray:
        return np.bincount(flat, weights=v * w, minlength=n + 1)[1:]

    area = total(np.ones_like(x))
    safe = np.maximum(area, 1)
    mx, my = total(x) / safe, total(y) / safe
    cxx, cyy, cxy = total(x * x) / safe - mx**2, total(y * y) / safe - my**2, total(x * y) / safe - mx * my
    spread = np.sqrt(((cxx - cyy) / 2) ** 2 + cxy**2)
    major, minor = (cxx + cyy) / 2 + spread, np.maximum((cxx + cyy) / 2 - spread, 0)
    elongation = 1 - np.sqrt(minor / np.maximum(major, 1e-9))
    theta = 0.5 * np.arctan2(2 * cxy, cxx - cyy)
    return area, elongation, theta


def nuclei_of(bank: TextureBank) -> Nuclei:
    fields = ("tile", "inst_id", "cls", "box", "log_area", "elongation", "theta", "ring")
    parts: dict[str, list] = {k: [] for k in fields}
    for t, tile in enumerate(bank.tiles):
        inst = tile.inst_map
        n = int(inst.max(initial=0))
        if n == 0:
            continue
        area, elongation, theta = shape_moments(inst > 0, inst, n)
        ring_labels = np.where(inst == 0, ndi.grey_dilation(inst, size=2 * MARGIN + 1), 0)
        ring_count = np.maximum(np.bincount(ring_labels.ravel(), minlength=n + 1)[1:], 1)
        ring = np.stack([np.bincount(ring_labels.ravel(), weights=tile.image[..., c].ravel().astype(np.float64),
                                     minlength=n + 1)[1:] / ring_count for c in range(3)], 1)
        h, w = inst.shape
        for i, sl in enumerate(ndi.find_objects(inst), start=1):
            cls = tile.inst_classes.get(i, 0)
            if sl is None or cls == 0 or area[i - 1] < 4:
                continue
            y0, y1, x0, x1 = sl[0].start - MARGIN, sl[0].stop + MARGIN, sl[1].start - MARGIN, sl[1].stop + MARGIN
            if y0 < 0 or x0 < 0 or y1 > h or x1 > w:  # cut by the tile's border: not a whole nucleus
                continue
            for key, v in (("tile", t), ("inst_id", i), ("cls", cls), ("box", (y0, x0, y1, x1)),
                           ("log_area", np.log(area[i - 1])), ("elongation", elongation[i - 1]),
                           ("theta", theta[i - 1]), ("ring", ring[i - 1])):
                parts[key].append(v)
    return Nuclei(**{k: np.asarray(v) for k, v in parts.items()})


@dataclass
class PatchIndex:
    """Every PATCH² position (on a stride) of one slide's tiles, with the key the quilter searches by."""

    tile: np.ndarray  # (M,) bank tile index
    yx: np.ndarray  # (M, 2) top-left corner in the tile
    keys: np.ndarray  # (M, D) float32
    patch: int


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


def patch_index(bank: TextureBank, tiles: list[int], patch: int, stride: int, nucleus_weight: float) -> PatchIndex:
    tile_ids, corners, keys = [], [], []
    for t in tiles:
        tile = bank.tiles[t]
        h, w = tile.inst_map.shape
        if h < patch or w < patch:
            continue
        ys, xs = np.meshgrid(np.arange(0, h - patch + 1, stride), np.arange(0, w - patch + 1, stride), indexing="ij")
        yx = np.stack([ys.ravel(), xs.ravel()], 1)
        blurred, fraction = blurred_and_fraction(tile.image, tile.inst_map > 0)
        keys.append(colour_key(blurred, fraction, yx, patch, nucleus_weight))
        corners.append(yx)
        tile_ids.append(np.full(len(yx), t))
    return PatchIndex(np.concatenate(tile_ids), np.concatenate(corners), np.concatenate(keys), patch)
