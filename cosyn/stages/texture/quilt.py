"""Background by image quilting (Efros & Freeman 2001): the output is tiled with overlapping patches of
real tissue, each chosen to match a guide's low-frequency colour and the target's nucleus layout and to
agree with what is already placed, then joined along a minimum-error boundary cut that is feathered by
one pixel, so the seam is neither a straight line nor a sharp edge. The cut is cheaper where a real
nucleus will be pasted later: a seam drawn there is covered."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cosyn.stages.texture.bank import TextureBank
from cosyn.stages.texture.catalogue import PatchIndex, blurred_and_fraction, colour_key

CANDIDATES = 24  # nearest keys reranked by overlap error for each patch
TOLERANCE = 0.1  # pick at random among candidates within 10% of the best cost (variety, as Efros & Freeman)


@dataclass
class QuiltWeights:
    overlap: float = 1.0  # mean squared colour error in the overlap with what is placed
    key: float = 0.05  # squared key distance, per key dimension
    stray_nuclei: float = 0.5  # fraction of the patch that is a real nucleus where the target has none
    seam_sigma: float = 0.0  # > 0: colour blended across the seam over this many px, detail cut sharp
    under_nuclei: float = 0.1  # the cut's cost where a pasted nucleus will cover it, against 1 elsewhere


def two_band_blend(old: np.ndarray, new: np.ndarray, keep_new: np.ndarray, filled: np.ndarray,
                   sigma: float) -> np.ndarray:
    """The new patch over the old along the cut. Detail (what a blur of `sigma` removes) switches at the cut,
    feathered by one pixel, so no texture is doubled; colour (the blur) crosses over `sigma` px, so the two
    patches meet without a step (Burt & Adelson's multiband blending with two bands). sigma 0: one band."""
    sharp = np.where(filled, cv2.GaussianBlur(keep_new.astype(np.float32), (0, 0), 1.0), 1.0)[..., None]
    if sigma <= 0:
        return sharp * new + (1 - sharp) * old
    smooth = np.where(filled, cv2.GaussianBlur(keep_new.astype(np.float32), (0, 0), sigma), 1.0)[..., None]
    weight = cv2.GaussianBlur(filled.astype(np.float32), (0, 0), sigma)[..., None]
    # the old colour from placed pixels only (normalised convolution): the unfilled part is zeros, not tissue
    low_old = cv2.GaussianBlur(old * filled[..., None], (0, 0), sigma) / np.maximum(weight, 1e-3)
    low_new = cv2.GaussianBlur(new, (0, 0), sigma)
    return (smooth * low_new + (1 - smooth) * low_old) + (sharp * (new - low_new) + (1 - sharp) * (old - low_old))


@dataclass
class Quilt:
    image: np.ndarray  # (H, W, 3) float32, 0..255
    nuclei: np.ndarray  # (H, W) bool: pixels of a real nucleus the quilt carried along
    source: np.ndarray  # (H, W) int64: which (tile, shift) each pixel was copied from


def positions(size: int, patch: int, step: int) -> list[int]:
    """Patch corners covering [0, size): every `step`, the last one flush with the end."""
    if size <= patch:
        return [0]
    return sorted(set(range(0, size - patch, step)) | {size - patch})


def min_cut(error: np.ndarray) -> np.ndarray:
    """For an (h, w) overlap error, the column of the cheapest top-to-bottom 8-connected path in each row."""
    h, w = error.shape
    cost = error.astype(np.float64).copy()
    back = np.zeros((h, w), np.int64)
    for i in range(1, h):
        prev = np.pad(cost[i - 1], 1, constant_values=np.inf)
        stacked = np.stack([prev[:-2], prev[1:-1], prev[2:]])
        step = stacked.argmin(0)
        back[i] = np.arange(w) + step - 1
        cost[i] += stacked[step, np.arange(w)]
    path = np.empty(h, np.int64)
    path[-1] = int(cost[-1].argmin())
    for i in range(h - 1, 0, -1):
        path[i - 1] = back[i, path[i]]
    return path


def seam_mask(old: np.ndarray, new: np.ndarray, filled: np.ndarray, covered: np.ndarray,
              under_nuclei: float) -> np.ndarray:
    """Where (1) the new patch replaces what is already placed: right of the cut through the left overlap and
    below the cut through the top overlap; everywhere not yet filled. Where `covered` (a nucleus will be
    pasted there) the cut's cost is scaled by `under_nuclei`."""
    p_h, p_w = filled.shape
    error = ((old - new) ** 2).sum(-1) * np.where(covered, under_nuclei, 1.0)
    keep_new = np.ones((p_h, p_w), bool)
    left = int(np.argmin(filled.all(0))) if not filled.all() else p_w
    top = int(np.argmin(filled.all(1))) if not filled.all() else p_h
    if 0 < left < p_w and filled[:, :left].all():
        cut = min_cut(error[:, :left])
        keep_new &= np.arange(p_w)[None, :] > cut[:, None]
    if 0 < top < p_h and filled[:top].all():
        cut = min_cut(error[:top].T)
        keep_new &= np.arange(p_h)[:, None] > cut[None, :]
    return keep_new | ~filled


def quilt(bank: TextureBank, index: PatchIndex, guide: np.ndarray, target_nuclei: np.ndarray, covered: np.ndarray,
          overlap: int, rng: np.random.Generator, weights: QuiltWeights, nucleus_weight: float) -> Quilt:
    """Tile a canvas of `guide`'s size. `guide` (H, W, 3) uint8 is the base image brought to the bank's colours;
    `target_nuclei` (H, W) bool is where the output's nuclei will be pasted (generously: a patch should bring
    no nucleus near them), `covered` (H, W) bool where a pasted nucleus will surely lie (cuts are cheap there)."""
    h, w = target_nuclei.shape
    p = index.patch
    ys, xs = positions(h, p, p - overlap), positions(w, p, p - overlap)
    corners = np.array([(y, x) for y in ys for x in xs])
    blurred, fraction = blurred_and_fraction(guide, target_nuclei)
    padded_h, padded_w = max(h, p), max(w, p)
    if (padded_h, padded_w) != (h, w):  # a canvas smaller than a patch: key it as if padded
        blurred = np.pad(blurred, ((0, padded_h - h), (0, padded_w - w), (0, 0)), mode="edge")
        fraction = np.pad(fraction, ((0, padded_h - h), (0, padded_w - w)), mode="edge")
    queries = colour_key(blurred, fraction, corners, p, nucleus_weight)
    key_dist, found = index.search.search(queries, min(CANDIDATES, len(index.keys)))

    image = np.zeros((padded_h, padded_w, 3), np.float32)
    nuclei = np.zeros((padded_h, padded_w), bool)
    source = np.full((padded_h, padded_w), -1, np.int64)
    filled = np.zeros((padded_h, padded_w), bool)
    stray_zone = ~np.pad(cv2.dilate(target_nuclei.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0,
                         ((0, padded_h - h), (0, padded_w - w)))
    covered = np.pad(covered, ((0, padded_h - h), (0, padded_w - w)))
    for q, (y, x) in enumerate(corners):
        win = (slice(y, y + p), slice(x, x + p))
        cand = found[q][found[q] >= 0]
        windows = [(bank.tiles[index.tile[c]], slice(index.yx[c, 0], index.yx[c, 0] + p),
                    slice(index.yx[c, 1], index.yx[c, 1] + p)) for c in cand]
        patches = np.stack([t.image[ys, xs] for t, ys, xs in windows]).astype(np.float32)
        masks = np.stack([t.inst_map[ys, xs] > 0 for t, ys, xs in windows])
        shifts = _shift_ids(index, cand, y, x)
        here = filled[win]
        ov = ((patches - image[win]) / 255) ** 2
        overlap_err = (ov.sum(-1) * here).sum((1, 2)) / max(here.sum(), 1)
        stray = (masks & stray_zone[win]).mean((1, 2))
        cost = (weights.overlap * overlap_err + weights.key * key_dist[q][:len(cand)] / queries.shape[1]
                + weights.stray_nuclei * stray)
        if here.any():  # never continue a neighbour's copy: it would grow one verbatim region without bound
            cost = np.where([(source[win][here] == s).mean() > 0.5 for s in shifts], np.inf, cost)
        if not np.isfinite(cost).any():
            cost = np.zeros(len(cand))
        good = np.flatnonzero(cost <= cost.min() * (1 + TOLERANCE) + 1e-12)
        pick = int(rng.choice(good))
        new = seam_mask(image[win], patches[pick], here, covered[win], weights.under_nuclei)
        image[win] = two_band_blend(image[win], patches[pick], new, here, weights.seam_sigma)
        nuclei[win] = np.where(new, masks[pick], nuclei[win])
        source[win] = np.where(new, shifts[pick], source[win])
        filled[win] = True
    return Quilt(image[:h, :w], nuclei[:h, :w], source[:h, :w])


def _shift_ids(index: PatchIndex, cand: np.ndarray, y: int, x: int) -> np.ndarray:
    """One id per (tile, offset between source and output): pixels copied with one id form a verbatim copy."""
    dy, dx = index.yx[cand, 0] - y, index.yx[cand, 1] - x
    return (index.tile[cand].astype(np.int64) * 4096 + (dy + 2048)) * 4096 + (dx + 2048)
