"""Edits of real CoNSeP validation tiles: seam visibility and time, against a full sample of the same layout.

    .venv/bin/python benchmarks/edit_tile.py --checkpoint checkpoints/default \
        --data ../shared/data/consep_patched --tiles 5 --out benchmarks/results/edit_tile.json

Each edit adds 3 inflammatory nuclei at random places of a validation tile (seeded). The seam measure is
the mean gradient magnitude (Sobel, grey) in a 2 px band on each side of the region's border divided by
the mean elsewhere, for the edited tile and for the real tile with the same band: a visible seam raises
the first above the second. Time: median over the tiles, the edit vs `pipe.sample` of the edited
layout at the same size, same settings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy import ndimage

from cosyn.core.layout import Layout, Point
from cosyn.data.dataset import split_by_source
from cosyn.data.formats import read_dataset
from cosyn.data.targets import layout_from_sample
from cosyn.editing import edit_tile
from cosyn.editing.edit import MARGIN_UM, changed_positions, grown_to_instances, region_around
from cosyn.model.pipeline import CoSynPipeline
from cosyn.model.settings import SamplingSettings


def band_ratio(image: np.ndarray, region: np.ndarray, width: int = 2) -> float:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    grad = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    band = ndimage.binary_dilation(region, iterations=width) & ~ndimage.binary_erosion(region, iterations=width)
    return float(grad[band].mean() / grad[~band].mean())


def save_figure(path: Path, before: np.ndarray, after: np.ndarray, region: np.ndarray, added: list[Point]) -> None:
    """before | after, each twice as large, the regenerated region outlined and the added centroids marked."""
    big = [cv2.resize(im, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST) for im in (before, after)]
    edge = cv2.resize(region.astype(np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(edge, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    marked = big[1].copy()
    cv2.drawContours(marked, contours, -1, (255, 255, 0), 1)
    for p in added:
        cv2.drawMarker(marked, (int(2 * p.x), int(2 * p.y)), (0, 255, 0), cv2.MARKER_CROSS, 10, 2)
    grid = np.concatenate([big[0], np.full((big[0].shape[0], 8, 3), 255, np.uint8), marked], 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="checkpoints/default")
    ap.add_argument("--data", default="../shared/data/consep_patched")
    ap.add_argument("--tiles", type=int, default=5)
    ap.add_argument("--tile", help="edit only this validation tile (e.g. train_19_005)")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/edit_tile.json")
    ap.add_argument("--figure", help="write before | after (region outlined) of the first tile here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    samples = read_dataset(args.data)
    _, val_idx = split_by_source(samples, 0.15, 0)
    pipe = CoSynPipeline.from_pretrained(args.checkpoint)
    settings = SamplingSettings(steps=args.steps)
    rows = []
    picked = val_idx[:: max(1, len(val_idx) // args.tiles)][: args.tiles]
    if args.tile:
        picked = [i for i in val_idx if samples.names[i] == args.tile]
    for k, i in enumerate(picked):
        tile = samples[i]
        rng = np.random.default_rng(k)
        original = layout_from_sample(tile)
        added = [Point(float(x), float(y), "inflammatory") for x, y in rng.uniform(16, tile.width - 16, (3, 2))]
        edited = Layout(tile.width, tile.height, original.classes, [*original.points, *added], tile.mpp,
                        tile.tissue)
        t0 = time.perf_counter()
        out = edit_tile(pipe, tile, edited, settings=settings.with_(seed=k))
        t_edit = time.perf_counter() - t0
        t0 = time.perf_counter()
        pipe.sample(edited, settings=settings.with_(seed=k))
        t_full = time.perf_counter() - t0
        region = grown_to_instances(region_around(changed_positions(original, edited), tile.inst_map.shape,
                                                  MARGIN_UM / tile.mpp), tile.inst_map)
        if args.figure and not rows:
            save_figure(Path(args.figure), tile.image, out.image, region, added)
        hits = [int(out.inst_map[min(int(round(p.y)), tile.height - 1), min(int(round(p.x)), tile.width - 1)])
                for p in added]
        right = sum(h > 0 and out.inst_classes.get(h) == tile.classes.id_of("inflammatory") for h in hits)
        rows.append({"tile": tile.name, "added_with_instance": sum(h > 0 for h in hits),
                     "added_of_the_class": right, "added": len(added), "edit_s": t_edit, "sample_s": t_full,
                     "seam_edited": band_ratio(out.image, region), "seam_real": band_ratio(tile.image, region),
                     "new_instances": out.params["edit"]["new_instances"]})
        print(json.dumps(rows[-1]), flush=True)
    summary = {"tiles": len(rows), "steps": args.steps,
               "edit_s_median": statistics.median(r["edit_s"] for r in rows),
               "sample_s_median": statistics.median(r["sample_s"] for r in rows),
               "seam_ratio_median": statistics.median(r["seam_edited"] / r["seam_real"] for r in rows),
               "added_yield": sum(r["added_with_instance"] for r in rows) / sum(r["added"] for r in rows),
               "added_class_accuracy": sum(r["added_of_the_class"] for r in rows)
               / max(1, sum(r["added_with_instance"] for r in rows)),
               "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
