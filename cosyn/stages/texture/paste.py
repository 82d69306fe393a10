"""Nuclei from real tissue: every requested centroid gets a whole real nucleus of its class, of the size
and orientation the base model drew there, with a few pixels of its own surroundings, blended into the
background. Its pasted mask becomes the instance, so the labels agree with the image by construction
(RESAIL's retrieval by class and shape; NucleiMix's placement at a layout's points)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cosyn.stages.texture.bank import TextureBank
from cosyn.stages.texture.nuclei import MARGIN, Nuclei, shape_moments

SHORTLIST = 8  # best-matching nuclei a paste is drawn from at random
ELONGATED = 0.2  # above this the base's orientation is followed; rounder nuclei get a random one
MIN_CANDIDATES = 30  # fewer nuclei of a class in the chosen slide: search the whole bank


@dataclass
class Target:
    """One nucleus to paste, at the output's resolution."""

    x: float
    y: float
    cls: int
    log_area: float
    elongation: float
    theta: float


@dataclass
class Paste:
    image: np.ndarray  # (h, w, 3) float32 crop, already turned to its orientation
    nucleus: np.ndarray  # (h, w) bool
    top: int  # where the crop goes in the output (may reach beyond it)
    left: int


def targets_from_base(points_xy: np.ndarray, point_classes: np.ndarray, inst_up: np.ndarray,
                      nuclei: Nuclei, size_to_bank: float = 0.0) -> list[Target]:
    """A target per layout point; size and shape from the base instance under it (upsampled to the output),
    or the class's median size when the base drew nothing there. `size_to_bank` (0..1) moves each class's
    sizes by that fraction of the gap between the bank's median log-area and this tile's: the base keeps
    which nuclei are larger, real tissue says how large they are."""
    n = int(inst_up.max(initial=0))
    area, elongation, theta = shape_moments(inst_up > 0, inst_up, n) if n else (np.zeros(0),) * 3
    out = []
    for (x, y), c in zip(points_xy, point_classes, strict=True):
        yi, xi = min(int(y), inst_up.shape[0] - 1), min(int(x), inst_up.shape[1] - 1)
        i = int(inst_up[yi, xi])
        if i > 0 and area[i - 1] >= 4:
            out.append(Target(float(x), float(y), int(c), float(np.log(area[i - 1])), float(elongation[i - 1]),
                              float(theta[i - 1])))
        else:
            same = nuclei.log_area[nuclei.cls == c]
            typical = float(np.median(same)) if len(same) else float(np.log(60.0))
            out.append(Target(float(x), float(y), int(c), typical, 0.0, 0.0))
    if size_to_bank > 0:
        for c in {t.cls for t in out}:
            mine, same = [t for t in out if t.cls == c], nuclei.log_area[nuclei.cls == c]
            if len(same):
                shift = size_to_bank * (float(np.median(same)) - float(np.median([t.log_area for t in mine])))
                for t in mine:
                    t.log_area += shift
    return out


def choose(target: Target, nuclei: Nuclei, allowed: np.ndarray, background: np.ndarray,
           rng: np.random.Generator) -> int:
    """Row of `nuclei` to paste for `target`: its class, closest in size and elongation, and in the colour of
    its surroundings to the background where it lands; one of the SHORTLIST best at random."""
    rows = np.flatnonzero((nuclei.cls == target.cls) & allowed)
    if len(rows) < MIN_CANDIDATES:
        rows = np.flatnonzero(nuclei.cls == target.cls)
    if len(rows) == 0:
        rows = np.arange(len(nuclei.cls))
    y, x = (min(max(int(v), 0), s - 1) for v, s in zip((target.y, target.x), background.shape[:2], strict=True))
    cost = (np.abs(nuclei.log_area[rows] - target.log_area)
            + 0.5 * np.abs(nuclei.elongation[rows] - target.elongation)
            + np.abs(nuclei.ring[rows] - background[y, x]).sum(1) / 255)
    short = rows[np.argsort(cost)[:SHORTLIST]]
    return int(rng.choice(short))


def oriented(bank: TextureBank, nuclei: Nuclei, row: int, target: Target, rng: np.random.Generator) -> Paste:
    """The nucleus' crop in the dihedral orientation closest to the target's (no interpolation: rotations by
    90° and flips keep every real pixel), placed so its centroid lands on the target's point."""
    y0, x0, y1, x1 = nuclei.box[row]
    tile = bank.tiles[nuclei.tile[row]]
    crop = tile.image[y0:y1, x0:x1].astype(np.float32)
    mask = tile.inst_map[y0:y1, x0:x1] == nuclei.inst_id[row]
    variants = [(np.rot90(crop, k), np.rot90(mask, k)) for k in range(4)]
    variants += [(im[:, ::-1], m[:, ::-1]) for im, m in variants]
    if target.elongation > ELONGATED:
        angles = np.array([shape_moments(m, m.astype(np.int32), 1)[2][0] for _, m in variants])
        diff = np.abs((angles - target.theta + np.pi / 2) % np.pi - np.pi / 2)
        pick = int(diff.argmin())
    else:
        pick = int(rng.integers(len(variants)))
    image, nucleus = (np.ascontiguousarray(a) for a in variants[pick])
    cy, cx = np.argwhere(nucleus).mean(0)
    return Paste(image, nucleus, int(round(target.y - cy)), int(round(target.x - cx)))


def footprint(paste: Paste, shape: tuple[int, int]) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """(output window, crop window) of a paste clipped to the output."""
    h, w = paste.nucleus.shape
    oy0, ox0 = max(paste.top, 0), max(paste.left, 0)
    oy1, ox1 = min(paste.top + h, shape[0]), min(paste.left + w, shape[1])
    return ((slice(oy0, oy1), slice(ox0, ox1)),
            (slice(oy0 - paste.top, oy1 - paste.top), slice(ox0 - paste.left, ox1 - paste.left)))


def blend(image: np.ndarray, inst_map: np.ndarray, paste: Paste, inst_id: int) -> None:
    """Paste in place: the nucleus and a feathered MARGIN-px ring of its own tissue, shifted by the difference
    between that ring's colour and the background's there (in full on the ring, in half on the nucleus, so a
    nucleus keeps most of its own stain); the nucleus' pixels become instance `inst_id`."""
    out_win, crop_win = footprint(paste, inst_map.shape)
    if out_win[0].stop <= out_win[0].start or out_win[1].stop <= out_win[1].start:
        return
    nucleus = paste.nucleus[crop_win]
    soft = cv2.GaussianBlur(nucleus.astype(np.float32), (0, 0), 0.7)
    grown = cv2.dilate(nucleus.astype(np.uint8), np.ones((2 * MARGIN - 1,) * 2, np.uint8)).astype(np.float32)
    alpha = cv2.GaussianBlur(grown, (0, 0), 1.0)[..., None]
    crop, here = paste.image[crop_win], image[out_win]
    ring = (grown > 0) & ~nucleus
    shift = (here[ring].mean(0) - crop[ring].mean(0)) if ring.any() else np.zeros(3, np.float32)
    crop = crop + shift * (1 - 0.5 * soft[..., None])
    image[out_win] = alpha * crop + (1 - alpha) * here
    inst_map[out_win] = np.where(nucleus, inst_id, inst_map[out_win])
