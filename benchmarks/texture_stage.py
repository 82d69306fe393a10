"""The texture stage applied to saved base triples, for ranking its designs on the realism judge.

Sampling the base model is the slow part (about 5 s a tile), so it runs once:

    cosyn augment --checkpoint checkpoints/default --data ../shared/data/consep_patched --split val --n 64 \
        --no-dihedral --jitter-um 0 --density 0 --no-refine --threads 1 --out /tmp/base_val

and this script turns those base triples (0.5 µm/px) into a candidate at 0.25 µm/px in the folder format,
with a texture bank built from the training split only:

    python benchmarks/texture_stage.py --data ../shared/data/consep_patched --base /tmp/base_val \
        --out /tmp/cand_texture [--patch 32 --overlap 8 ...]
    python benchmarks/realism_judge.py --candidate texture=/tmp/cand_texture

It prints seconds per triple (median), the largest verbatim copy and the centroids without a nucleus.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from cosyn.core.layout import Layout
from cosyn.core.triple import Triple
from cosyn.data.dataset import split_by_source
from cosyn.data.formats import read_dataset, write_dataset
from cosyn.data.sample import sample_from_triple
from cosyn.stages.base import STAIN_PARAM
from cosyn.stages.texture import TextureSettings, TextureStage, bank_from_samples, load_bank, save_bank
from cosyn.stages.texture.stain import Stain
from cosyn.stages.upsampler import Upsampler
from cosyn.training.config import TrainConfig

PROVENANCE = "CoNSeP train split patches (HoVer-Net, Graham et al. 2019), training side of split_by_source"


def bank_for(data: Path, path: Path):
    if path.exists():
        return load_bank(path)
    seq = read_dataset(data)
    samples = [seq[i] for i in range(len(seq))]
    train, _ = split_by_source(samples, TrainConfig.val_fraction, TrainConfig.seed)
    bank = bank_from_samples([samples[i] for i in train], list(samples[0].classes.names), PROVENANCE)
    save_bank(bank, path)
    return load_bank(path)


def base_triples(folder: Path) -> list[tuple[str, str, Triple]]:
    seq = read_dataset(folder, "folder")
    out = []
    for i, name in enumerate(seq.names):
        s = seq[i]
        meta = json.loads((folder / "meta" / f"{name}.json").read_text())
        layout = Layout.from_dict(meta["layout"])
        classes = {int(k): int(v) for k, v in meta["inst_classes"].items()}
        dist = np.zeros(s.inst_map.shape, np.float32)  # the texture stage does not read it
        base = Triple(s.image, s.class_map, s.inst_map, dist, classes, layout, dict(meta["params"]))
        out.append((name, meta.get("origin", {}).get("source", name), base))
    return out


def with_real_guides(triples: list[tuple[str, str, Triple]], data: Path, base: Path
                     ) -> list[tuple[str, str, Triple]]:
    """Each base triple with its image replaced by the real tile its layout came from, area-resized to it."""
    seq = read_dataset(data)
    images = {seq.names[i]: seq[i].image for i in range(len(seq))}
    out = []
    for name, source, t in triples:
        tile = json.loads((base / "meta" / f"{name}.json").read_text())["origin"]["tile"]
        h, w = t.image.shape[:2]
        out.append((name, source, replace(t, image=cv2.resize(images[tile], (w, h), interpolation=cv2.INTER_AREA))))
    return out


def with_source_stains(triples: list[tuple[str, str, Triple]], data: Path, base: Path
                       ) -> list[tuple[str, str, Triple]]:
    """Each base triple asking for the stain of its layout's source slide, measured on that slide's other
    tiles (the layout's own tile left out, so no output is coloured by the very tile it is judged with)."""
    seq = read_dataset(data)
    tiles = [(seq.names[i], seq[i].source, seq[i].image) for i in range(len(seq))]
    out = []
    for name, source, t in triples:
        origin = json.loads((base / "meta" / f"{name}.json").read_text())["origin"]
        stain = Stain.of([im for n, s, im in tiles if s == origin["source"] and n != origin["tile"]])
        out.append((name, source, replace(t, params={**t.params, STAIN_PARAM: stain.to_dict()})))
    return out


def capture_sources(stage: TextureStage) -> list[np.ndarray]:
    """The source map of every composition the stage makes from now on (which bank place each pixel is from)."""
    sources: list[np.ndarray] = []
    compose = stage.compose

    def recorded(*args, **kwargs):
        image, inst_map, source = compose(*args, **kwargs)
        sources.append(source)
        return image, inst_map, source

    stage.compose = recorded
    return sources


def seam_mask(source: np.ndarray, width: int = 2) -> np.ndarray:
    """uint8 (H, W): 1 within `width` px of a boundary between two quilt patches (pasted nuclei, whose source
    ids are negative, hide what is under them)."""
    quilt = source >= 0
    edge = np.zeros(source.shape, bool)
    for axis in (0, 1):
        step = np.diff(source, axis=axis) != 0
        both = quilt[:-1] & quilt[1:] if axis == 0 else quilt[:, :-1] & quilt[:, 1:]
        cut = step & both
        if axis == 0:
            edge[:-1] |= cut
        else:
            edge[:, :-1] |= cut
    kernel = np.ones((2 * width, 2 * width), np.uint8)
    return ((cv2.dilate(edge.astype(np.uint8), kernel) > 0) & quilt).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--base", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--bank", type=Path, default=Path("/tmp/texture_bank.safetensors"))
    ap.add_argument("--settings", type=json.loads, default={},
                    help='JSON of TextureSettings fields, e.g. \'{"patch": 48}\'')
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--draws", type=int, default=1,
                    help="outputs per base triple: draw d of triple k has seed k + 1000 d and name NAME_dD (d > 0); "
                         "the judge's AUC then averages over the stage's random choices (its source slide above all)")
    ap.add_argument("--first-draw", type=int, default=0,
                    help="draws first..first + draws - 1: a second set of draws to confirm a reading on fresh outputs")
    ap.add_argument("--upsampler", action="store_true", help="the Upsampler instead, on the same base triples")
    ap.add_argument("--real-guide", action="store_true",
                    help="diagnostic: each base image replaced by its layout's real tile at the base's size (a "
                         "perfect base model's image; the labels stay the base's)")
    ap.add_argument("--match-stain", action="store_true",
                    help="each output in the stain of its layout's source slide (its other tiles in --data)")
    ap.add_argument("--seams", type=Path, default=None,
                    help="also write each output's seam mask (quilt seams not under a pasted nucleus) to DIR/NAME.png")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    bank = bank_for(args.data, args.bank)
    stage = Upsampler() if args.upsampler else TextureStage(bank, TextureSettings.from_dict(args.settings),
                                                             bank_path=args.bank)
    size_mb = args.bank.stat().st_size / 2**20
    print(f"bank: {len(bank.tiles)} tiles, {size_mb:.1f} MB;"
          f" loaded in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    triples = base_triples(args.base)[: args.limit]
    if args.real_guide:
        triples = with_real_guides(triples, args.data, args.base)
    if args.match_stain:
        triples = with_source_stains(triples, args.data, args.base)
    sources = capture_sources(stage) if args.seams else []
    samples, seconds, copies, missed = [], [], [], 0
    draws = range(args.first_draw, args.first_draw + args.draws)
    made = [(f"{name}_d{d}" if d else name, source, base, k + 1000 * d)
            for d in draws for k, (name, source, base) in enumerate(triples)]
    for name, source, base, seed in made:
        t = time.perf_counter()
        out = stage.to_mpp(base, 0.25, seed=seed)
        seconds.append(time.perf_counter() - t)
        copies.append(out.params.get("largest_copy_um", 0.0))
        missed += out.params["missed_centroids"]
        samples.append(sample_from_triple(out, name, source, base.layout.class_set, 0.25))
        if args.seams:
            args.seams.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(args.seams / f"{name}.png"), seam_mask(sources.pop()) * 255)
    write_dataset(samples, args.out, "folder")
    report = {"settings": args.settings, "tiles": len(samples), "seconds_median": statistics.median(seconds),
              "largest_copy_um_median": statistics.median(copies), "largest_copy_um_max": max(copies),
              "missed_centroids": missed}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
