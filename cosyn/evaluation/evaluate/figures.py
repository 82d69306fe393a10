"""The report's figures: grid.png (real vs generated on the same layouts) and morphology.png
(per-class histograms of nucleus shape), drawn with PIL so that no plotting library is needed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cosyn.core.classes import ClassSet
from cosyn.core.visual import draw_points, grid, instance_contours, label_to_rgb
from cosyn.evaluation.evaluate.tiles import Generated, classes_of
from cosyn.evaluation.realism import MORPHOLOGY


def save_png(path: Path, image: np.ndarray) -> None:
    Image.fromarray(image).save(path, compress_level=6)


def _upscaled(tile: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(np.repeat(tile, factor, 0), factor, 1)


def comparison_grid(gens: Sequence[Generated], classes: ClassSet, rows: int, width: int = 256) -> np.ndarray:
    """Per layout: real image | real contours | generated image | generated contours | generated label + points,
    each tile enlarged (nearest) to about `width` px so that nuclei a few pixels wide stay visible."""
    zoom = max(1, width // gens[0].sample.width)
    # spread over all evaluated layouts (sources, densities), not the first few of one source
    picks = sorted({int(i) for i in np.linspace(0, len(gens) - 1, min(rows, len(gens))).round()})
    lines = []
    for g in (gens[i] for i in picks):
        r, s = g.real, g.sample
        label = draw_points(label_to_rgb(s.class_map, classes), g.layout.xy(), g.layout.class_ids(), classes, 1.5)
        tiles = [r.image, instance_contours(r.image, r.inst_map, classes_of(r), classes), s.image,
                 instance_contours(s.image, s.inst_map, g.inst_classes, classes), label]
        size = min(t.shape[0] for t in tiles), min(t.shape[1] for t in tiles)
        lines.append([_upscaled(t[:size[0], :size[1]], zoom) for t in tiles])
    body = grid(lines)
    header = ["real", "real labels", "generated", "generated instances", "generated label + layout points"]
    return _with_header(body, header, lines[0][0].shape[1])


def _with_header(body: np.ndarray, titles: Sequence[str], col_width: int, pad: int = 2) -> np.ndarray:
    strip = Image.new("RGB", (body.shape[1], 16), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for j, title in enumerate(titles):
        draw.text((pad + j * (col_width + pad) + 2, 2), title, fill=(0, 0, 0))
    return np.concatenate([np.asarray(strip), body])


def histogram_panel(real: np.ndarray, generated: np.ndarray, title: str, size: tuple[int, int] = (250, 130),
                    bins: int = 20) -> np.ndarray:
    """Two normalised histograms on shared bins: real as grey bars, generated as an orange outline."""
    w, h = size
    panel = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    draw.text((4, 2), f"{title}  (real n={len(real)}, gen n={len(generated)})", fill=(0, 0, 0))
    both = np.concatenate([real, generated])
    if both.size:
        lo, hi = np.percentile(both, [1, 99]) if both.size > 1 else (both.min(), both.max() + 1)
        edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
        top, bottom, left = 16, h - 14, 4
        hists = [np.histogram(np.clip(v, lo, hi), edges)[0] / max(1, len(v)) for v in (real, generated)]
        peak = max(float(x.max(initial=0)) for x in hists) or 1.0
        step = (w - 2 * left) / bins
        for i, v in enumerate(hists[0]):
            draw.rectangle([left + i * step, bottom - v / peak * (bottom - top), left + (i + 1) * step - 1, bottom],
                           fill=(170, 170, 170))
        points = []
        for i, v in enumerate(hists[1]):
            y = bottom - v / peak * (bottom - top)
            points += [(left + i * step, y), (left + (i + 1) * step, y)]
        draw.line(points, fill=(230, 120, 0), width=2)
        draw.text((left, bottom + 1), f"{lo:.2g}", fill=(0, 0, 0))
        draw.text((w - 40, bottom + 1), f"{hi:.3g}", fill=(0, 0, 0))
    return np.asarray(panel)


def morphology_figure(real: dict[int, np.ndarray], generated: dict[int, np.ndarray], classes: ClassSet) -> np.ndarray:
    """One row per nucleus class, one histogram panel per MORPHOLOGY feature (N x 3 arrays per class)."""
    units = {"area": "area um^2", "eccentricity": "eccentricity", "solidity": "solidity"}  # PIL's font is ASCII
    rows = []
    for c, name in enumerate(classes.names):
        if c == 0:
            continue
        r, g = real.get(c, np.zeros((0, 3))), generated.get(c, np.zeros((0, 3)))
        rows.append([histogram_panel(r[:, j], g[:, j], f"{name} {units[f]}") for j, f in enumerate(MORPHOLOGY)])
    body = grid(rows)
    return _with_header(body, ["grey bars: real nuclei; orange line: generated nuclei (normalised counts)"],
                        body.shape[1])
