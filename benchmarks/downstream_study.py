"""Downstream study (issue 24): do synthetic pairs make a nuclei segmenter better?

Four arms, each over seeds, one budget, scored on the validation tiles of the training split
(`split_by_source(samples, TrainConfig.val_fraction, TrainConfig.seed)`) at the data's native mpp:
  real            the real training tiles;
  real+synthetic  real + `--synthetic` tiles (`cosyn augment --split train`: dihedral, jitter, density);
  real+enriched   real + `--enriched` tiles (the same, from rare-class-enriched layouts);
  synthetic       `--synthetic` tiles only: train on synthetic, test on real (reported as a ratio).
Every (arm, synthetic set, seed) is one run: its segmenter trains (resumably) under --work, is
scored, and lands in --results beside the checkpoint's sha256, the second stage the synthetic
tiles came from and the training time. A set is named by its stages, size and the hash of its
generation.json (sets from before that hash was part of the name carry none). Runs already in
--results are skipped, so the study can run in parts (`--arm`, `--seed`); the summary (per-arm
means, per-seed paired differences from real, ratios) is rebuilt after every run and printed as a
table. `--controls` adds known-bad references for real seed 0: an untrained segmenter, and the
trained one scored against the labels of other tiles. `--summary` prints the table of --results
and trains nothing.

    .venv/bin/python benchmarks/downstream_study.py --arm real --seed 0 --controls
    .venv/bin/python benchmarks/downstream_study.py --summary
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cosyn.data.dataset import split_by_source  # noqa: E402
from cosyn.data.formats import read_dataset  # noqa: E402
from cosyn.evaluation.evaluate.sections.downstream import (  # noqa: E402
    BASELINE,
    controls,
    paired_summary,
    read_synthetic,
    summary_markdown,
)
from cosyn.evaluation.evaluate.tiles import RealData  # noqa: E402
from cosyn.evaluation.segmenter import Truth, score, truths  # noqa: E402
from cosyn.io.fileio import atomic_write, file_sha256  # noqa: E402
from cosyn.segmentation import Segmenter, SegmenterConfig, SegTile, SegTrainConfig, train_segmenter  # noqa: E402
from cosyn.segmentation.segmenter import WEIGHTS_NAME  # noqa: E402
from cosyn.training.config import TrainConfig  # noqa: E402

ARMS = (BASELINE, "real+synthetic", "real+enriched", "synthetic")
SYNTHETIC_SOURCE = {"real+synthetic": "synthetic", "real+enriched": "enriched", "synthetic": "synthetic"}
NO_STAGE = "none"


def run_key(arm: str, synthetic_set: str, seed: int) -> str:
    return f"{arm}|{synthetic_set}|seed{seed}"


def load_results(path: Path, budget: dict[str, Any]) -> dict[str, Any]:
    """The results so far; refuses a file made with another budget (its runs would not pair)."""
    if not path.is_file():
        return {"budget": budget, "runs": {}, "controls": {}, "summary": {}}
    results = json.loads(path.read_text())
    if results.get("budget") != budget:
        raise SystemExit(f"{path}: made with budget {results.get('budget')}, not {budget}; "
                         "pass another --results to start a study with this budget")
    return results


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """`paired_summary` per synthetic set (second stage and tile count): the real arm pairs with the
    synthetic arms of every set."""
    sets = sorted({r["synthetic_set"] for r in results["runs"].values()} - {NO_STAGE}) or [NO_STAGE]
    out = {}
    for synthetic_set in sets:
        runs: dict[str, dict[int, dict[str, Any]]] = {}
        for r in results["runs"].values():
            if r["synthetic_set"] in (synthetic_set, NO_STAGE):
                runs.setdefault(r["arm"], {})[r["seed"]] = r["scores"]
        out[synthetic_set] = paired_summary(runs)
    return out


def save_results(path: Path, results: dict[str, Any]) -> None:
    results["summary"] = summarise(results)
    text = json.dumps(results, indent=1, allow_nan=False, default=lambda v: None)
    atomic_write(path, lambda p: Path(p).write_text(text))


def second_stage_of(folder: Path) -> str:
    """The stages the synthetic tiles went through, from the first tile's meta (params["stages"])."""
    metas = sorted((folder / "meta").glob("*.json"))
    if not metas:
        return "unknown"
    stages = json.loads(metas[0].read_text()).get("params", {}).get("stages")
    return "+".join(stages) if stages else "unknown"


def set_label(folder: Path, stage: str, n_tiles: int) -> str:
    """Names a synthetic set by its stages, size and settings: two sets made with other settings (a new
    checkpoint, another second stage) never share a run key or a segmenter folder."""
    settings = folder / "generation.json"
    digest = file_sha256(settings)[:8] if settings.is_file() else "unrecorded"
    return f"{stage}:{n_tiles} tiles:{digest}"


def add_controls(results: dict[str, Any], of: str, config: SegmenterConfig, tests: list[Truth]) -> None:
    """`controls` (untrained; trained but scored against other tiles' labels) beside run `of`."""
    trained = Segmenter.load(results["runs"][of]["checkpoint"])
    results["controls"] = {"of": of, **controls(trained, config, tests)}


def print_summary(results: dict[str, Any]) -> None:
    """The summary table of every synthetic set, with the controls as rows."""
    for synthetic_set, summary in results["summary"].items():
        print(f"\nsynthetic set {synthetic_set} (controls beside {results['controls'].get('of', 'none')}):")
        print("\n".join(summary_markdown(summary, results["controls"])), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "consep_patched"))
    p.add_argument("--arm", action="append", choices=ARMS, help="repeatable; default: every arm with its data")
    p.add_argument("--seed", action="append", type=int, help="repeatable; default 0, 1, 2")
    p.add_argument("--synthetic", type=Path, help="a `cosyn augment --split train` folder")
    p.add_argument("--enriched", type=Path, help="the same from rare-class-enriched layouts")
    p.add_argument("--work", type=Path, default=Path("/tmp/cosyn_downstream_study"), help="segmenter folders")
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "downstream_study_cpu.json")
    p.add_argument("--steps", type=int, default=SegTrainConfig.steps)
    p.add_argument("--batch", type=int, default=SegTrainConfig.batch)
    p.add_argument("--crop", type=int, default=SegTrainConfig.crop)
    p.add_argument("--backbone", default=SegmenterConfig.backbone)
    p.add_argument("--controls", action="store_true", help="known-bad references beside real seed 0")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--summary", action="store_true", help="print the table of --results; train nothing")
    args = p.parse_args(argv)
    if args.summary:
        print_summary(json.loads(args.results.read_text()))
        return 0
    torch.set_num_threads(args.threads)

    seq = read_dataset(args.data)
    samples = [seq[i] for i in range(len(seq))]
    train_idx, val_idx = split_by_source(samples, TrainConfig.val_fraction, TrainConfig.seed)
    mpp = samples[0].mpp or SegmenterConfig.mpp
    real = RealData(samples[0].classes, [samples[i] for i in train_idx], [samples[i] for i in val_idx],
                    {samples[i].source or samples[i].name for i in val_idx})
    config = SegmenterConfig(real.classes.to_list(), mpp, backbone=args.backbone)
    budget = {"segmenter": config.to_dict(), "train": asdict(SegTrainConfig(args.steps, args.batch, args.crop)),
              "train_tiles": len(train_idx), "val_tiles": len(val_idx)}
    budget["train"].pop("seed")
    results = load_results(args.results, budget)
    tests = truths(real.split, mpp)
    real_tiles = [SegTile.from_sample(s, mpp) for s in real.train]
    folders = {"synthetic": args.synthetic, "enriched": args.enriched}
    arms = args.arm or [a for a in ARMS if a == BASELINE or folders[SYNTHETIC_SOURCE[a]]]
    for arm in arms:
        syn_folder = folders.get(SYNTHETIC_SOURCE.get(arm, ""))
        if arm != BASELINE and syn_folder is None:
            raise SystemExit(f"arm {arm} needs --{SYNTHETIC_SOURCE[arm]} DIR")
        stage = second_stage_of(syn_folder) if syn_folder else NO_STAGE
        syn_tiles = ([SegTile.from_sample(s, mpp) for s in read_synthetic(str(syn_folder), real, mpp)]
                     if syn_folder else [])
        tiles = (real_tiles if arm != "synthetic" else []) + syn_tiles
        synthetic_set = set_label(syn_folder, stage, len(syn_tiles)) if syn_folder else NO_STAGE
        for seed in args.seed or [0, 1, 2]:
            key = run_key(arm, synthetic_set, seed)
            if key in results["runs"]:
                print(f"{key}: done before, skipped", flush=True)
                continue
            folder = args.work / re.sub(r"[^A-Za-z0-9.]+", "_", f"{arm}_{synthetic_set}_seed{seed}")
            t0 = time.perf_counter()
            seg = train_segmenter(tiles, config, SegTrainConfig(args.steps, args.batch, args.crop, seed=seed),
                                  folder=folder, desc=key, data_key=f"{arm}:{len(tiles)}:{syn_folder}")
            t1 = time.perf_counter()
            scores = score(seg, tests, progress=True)
            results["runs"][key] = {
                "arm": arm, "seed": seed, "second_stage": stage, "synthetic_set": synthetic_set, "scores": scores,
                "checkpoint_sha256": file_sha256(folder / WEIGHTS_NAME), "checkpoint": str(folder),
                "synthetic": None if syn_folder is None else {"folder": str(syn_folder), "tiles": len(syn_tiles)},
                "train_tiles": len(tiles), "train_seconds": seg.train_info.get("seconds"),
                "this_session_seconds": round(t1 - t0, 1), "score_seconds": round(time.perf_counter() - t1, 1),
                "final_loss": seg.train_info.get("final_loss"), "threads": args.threads,
            }
            save_results(args.results, results)
            print(f"{key}: PQ {scores['pq']:.3f} mPQ+ {scores['mpq_plus']:.3f} AJI {scores['aji']:.3f} "
                  f"({seg.train_info.get('seconds')} s training)", flush=True)
    control_of = run_key(BASELINE, NO_STAGE, 0)
    if args.controls and control_of in results["runs"] and results["controls"].get("of") != control_of:
        add_controls(results, control_of, config, tests)
        save_results(args.results, results)
    print_summary(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
