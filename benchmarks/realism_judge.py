"""Rank second-stage candidates on the calibrated realism judge, with its calibration lines beside.

    python benchmarks/realism_judge.py --data ../shared/data/consep_patched \
        --candidate upsampler=/tmp/cand_upsampler [--candidate NAME=DIR ...] --threads 1

Each DIR is a `cosyn augment` output (folder format) of tiles at 0.25 µm/px generated from the
validation split's layouts (`--split val`); its tiles keep the source tile of their layout
("synthetic-<source>"). Each candidate is scored against the real validation tiles (split_by_source
with TrainConfig's val_fraction and seed) in four views: 0.25 and 0.5 µm/px (area downsample of both
sides), each with and without the JPEG q75 pass (applied to both sides at 0.25 µm/px; the real tiles
are q75 JPEGs already). Per view: C2ST AUC mean ± sd and per seed, the Laplacian-variance ratio and
the hematoxylin AUC of nucleus pixels (median over tiles); KID (Inception on whole tiles) in the JPEG
views. The calibration lines of cosyn.evaluation.judge are printed beside every view; a view whose
lines fail gets no verdict. `--stain-matched-floor` adds the floor without stain shift (the training
tiles moved to the validation sources' stains), the control for `--match-stain` candidates. Results merge
into the JSON by candidate name, and calibration rows are
cached there under the judge's settings, so a new candidate costs only its own judges.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cosyn.data.dataset import split_by_source
from cosyn.data.formats import read_dataset
from cosyn.data.sample import Sample
from cosyn.evaluation.c2st import C2STConfig
from cosyn.evaluation.judge import FLOOR_MARGIN, JUDGE_MPP, View, calibrated, calibration, compare, floor_tiles
from cosyn.evaluation.judge_report import NOT_CALIBRATED, calibration_table, candidate_rows
from cosyn.evaluation.realism import inception_features, kernel_inception_distance
from cosyn.evaluation.texture import laplacian_ratio, median_hematoxylin_auc
from cosyn.io.fileio import atomic_write
from cosyn.stages.texture.stain import Stain, toward
from cosyn.training.config import TrainConfig

VIEWS = {"0.25 jpeg": View(True, 1), "0.25 raw": View(False, 1), "0.5 jpeg": View(True, 2), "0.5 raw": View(False, 2)}
SYNTHETIC = "synthetic-"
STAIN_MATCHED = "train_in_val_stain"
STAIN_MATCHED_TEXT = ("training-split real in the validation sources' stains, split with them (the floor without "
                      "stain shift: the control for `--match-stain` candidates)")


def real_tiles(data: str) -> tuple[list[Sample], list[Sample]]:
    """The validation split's tiles and the floor line's training-split tiles, at native mpp."""
    seq = read_dataset(data)
    samples = [seq[i] for i in range(len(seq))]
    train_idx, val_idx = split_by_source(samples, TrainConfig.val_fraction, TrainConfig.seed)
    val, train = [samples[i] for i in val_idx], [samples[train_idx[i]] for i in floor_tiles(len(train_idx))]
    for s in val + train:
        if s.mpp is not None and abs(s.mpp - JUDGE_MPP) > 1e-6:
            raise ValueError(f"{data}: tile {s.name} is at {s.mpp} µm/px; the judge works at {JUDGE_MPP}")
    return val, train


def candidate_tiles(folder: str, val_sources: set[str]) -> list[Sample]:
    """A candidate's tiles, each with the source tile of the layout it was generated from."""
    seq = read_dataset(folder, "folder")
    tiles = []
    for i in range(len(seq)):
        s = seq[i]
        source = s.source.removeprefix(SYNTHETIC)
        if source not in val_sources:
            raise ValueError(f"{folder}: tile {s.name} comes from source {s.source!r}, not one of the validation "
                             f"split's {sorted(val_sources)} (generate with `cosyn augment --split val`)")
        if s.mpp is None or abs(s.mpp - JUDGE_MPP) > 1e-6:
            raise ValueError(f"{folder}: tile {s.name} is at {s.mpp} µm/px, not {JUDGE_MPP}")
        tiles.append(Sample(s.name, s.image, s.inst_map, s.class_map, s.inst_ids, s.centroids, s.inst_classes,
                            s.classes, s.tissue, s.mpp, source))
    if not tiles:
        raise ValueError(f"{folder}: no tiles")
    return tiles


def images_by_slide(data: str) -> dict[str, list[np.ndarray]]:
    """Every tile's image of the dataset, by source slide."""
    seq = read_dataset(data)
    by_source: dict[str, list[np.ndarray]] = {}
    for i in range(len(seq)):
        by_source.setdefault(seq[i].source, []).append(seq[i].image)
    return by_source


def in_validation_stains(data: str, val: list[Sample], train: list[Sample]) -> tuple[list[np.ndarray], list[str]]:
    """The floor's training tiles, each moved to one validation source's stain (in turn) as the texture stage
    moves an output asked for a reference stain (from the training slides' average stain: each tile keeps
    its slide's offset), with that source as its own: the stain-referenced control."""
    by_source = images_by_slide(data)
    targets = sorted({s.source for s in val})
    average = Stain.average([Stain.of(images) for source, images in by_source.items() if source not in targets])
    stains = {source: Stain.of(by_source[source]) for source in targets}
    assigned = [targets[k % len(targets)] for k in range(len(train))]
    return [toward(s.image, average, stains[a]) for s, a in zip(train, assigned, strict=True)], assigned


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`old` updated by `new`, nested dictionaries merged key by key."""
    out = dict(old)
    for k, v in new.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def data_key(val: list[Sample], train: list[Sample]) -> str:
    names = ",".join(s.name for s in val + train)
    return hashlib.sha1(names.encode()).hexdigest()[:12]


def score(cand: list[Sample], val: list[Sample], cfg: C2STConfig, view: View,
          real_features: dict[str, np.ndarray]) -> dict[str, Any]:
    row = compare([s.image for s in val], [s.source for s in val], [s.image for s in cand],
                  [s.source for s in cand], cfg, view)
    real_v, cand_v = [view(s.image) for s in val], [view(s.image) for s in cand]
    masks = [view_mask(s.inst_map > 0, view) for s in cand]
    row |= {"laplacian_ratio": laplacian_ratio(cand_v, real_v), "h_auc_median": median_hematoxylin_auc(cand_v, masks)}
    if view.jpeg:
        key = f"{view.mpp:g}"
        if key not in real_features:
            real_features[key] = inception_features(real_v)
        kid, _ = kernel_inception_distance(inception_features(cand_v), real_features[key])
        row["kid"] = kid
    return row


def view_mask(mask: np.ndarray, view: View) -> np.ndarray:
    return mask[::view.factor, ::view.factor] if view.factor > 1 else mask


def real_h_auc(val: list[Sample], view: View) -> float:
    return median_hematoxylin_auc([view(s.image) for s in val], [view_mask(s.inst_map > 0, view) for s in val])


def markdown(report: dict[str, Any], views: dict[str, View], cal_keys: dict[str, str], names: list[str]) -> str:
    md = []
    for label, view in views.items():
        lines = report["calibration"][cal_keys[label]]["lines"]
        ok = calibrated(lines)
        md += [f"### {label}: {view.mpp:g} µm/px, JPEG q75 on both sides: {view.jpeg}", ""]
        md += calibration_table(lines) + [""] + ([] if ok else [NOT_CALIBRATED, ""])
        md += [f"Real validation tiles with their own annotations: H-AUC median {report['real_h_auc'][label]:.3f}.", ""]
        md += candidate_rows(names, [report["candidates"][n]["views"][label] for n in names], ok,
                             lines["train_vs_val"], FLOOR_MARGIN) + [""]
    return "\n".join(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/consep_patched")
    ap.add_argument("--candidate", action="append", default=[], metavar="NAME=DIR",
                    help="a `cosyn augment --split val` output at 0.25 µm/px (repeatable)")
    ap.add_argument("--views", default=",".join(VIEWS), help=f"comma-separated, of: {', '.join(VIEWS)}")
    ap.add_argument("--stain-matched-floor", action="store_true",
                    help="also the floor with the stain shift taken out: the control for stain-referenced candidates")
    ap.add_argument("--json", default="benchmarks/realism_judge_cpu.json")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--crop", type=int, default=C2STConfig.crop)
    ap.add_argument("--steps", type=int, default=C2STConfig.steps)
    ap.add_argument("--batch", type=int, default=C2STConfig.batch)
    ap.add_argument("--lr", type=float, default=C2STConfig.lr)
    ap.add_argument("--width", type=int, default=C2STConfig.width)
    ap.add_argument("--seeds", type=int, default=len(C2STConfig.seeds))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = C2STConfig(crop=args.crop, steps=args.steps, batch=args.batch, lr=args.lr, width=args.width,
                     seeds=tuple(range(args.seeds)))
    views = {label: VIEWS[label] for label in args.views.split(",")}
    val, train = real_tiles(args.data)
    path = Path(args.json)
    report: dict[str, Any] = (json.loads(path.read_text()) if path.is_file()
                              else {"calibration": {}, "candidates": {}, "real_h_auc": {}})
    report["validation"] = {"tiles": len(val), "sources": sorted({s.source for s in val}),
                            "floor_training_tiles": len(train)}

    def save() -> None:  # merged into what is on disk now: runs of other views may write the same file
        merged = merge(json.loads(path.read_text()) if path.is_file() else {}, report)
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(merged, indent=1)))

    cal_keys = {}
    for label, view in views.items():
        key = f"{view.key(cfg)},data={data_key(val, train)}"
        cal_keys[label] = key
        if key not in report["calibration"]:
            t0 = time.perf_counter()
            lines = calibration([s.image for s in val], [s.source for s in val], [s.image for s in train],
                                [s.source for s in train], cfg, view, log=lambda m: print(m, flush=True))
            report["calibration"][key] = {"view": label, "lines": lines, "seconds": time.perf_counter() - t0}
            save()
        if args.stain_matched_floor and STAIN_MATCHED not in report["calibration"][key]["lines"]:
            images, sources = in_validation_stains(args.data, val, train)
            row = compare([s.image for s in val], [s.source for s in val], images, sources, cfg, view)
            report["calibration"][key]["lines"][STAIN_MATCHED] = {**row, "bar": "reported", "pass": True,
                                                                 "text": STAIN_MATCHED_TEXT}
            save()
        report["real_h_auc"][label] = real_h_auc(val, view)
    real_features: dict[str, np.ndarray] = {}
    names = []
    for spec in args.candidate:
        name, folder = spec.split("=", 1)
        cand = candidate_tiles(folder, {s.source for s in val})
        entry = report["candidates"].setdefault(name, {"views": {}})
        entry |= {"folder": Path(folder).name, "tiles": len(cand)}
        for label, view in views.items():
            t0 = time.perf_counter()
            entry["views"][label] = {**score(cand, val, cfg, view, real_features), "judge": cal_keys[label],
                                     "seconds": time.perf_counter() - t0}
            print(f"{name} {label}: {json.dumps(entry['views'][label])}", flush=True)
            save()
        names.append(name)
    report = merge(json.loads(path.read_text()), report)  # with what runs of other views or candidates wrote
    names += [n for n in report["candidates"] if n not in names
              and all(report["candidates"][n]["views"].get(label, {}).get("judge") == cal_keys[label]
                      for label in views)]
    print(markdown(report, views, cal_keys, names))


if __name__ == "__main__":
    main()
