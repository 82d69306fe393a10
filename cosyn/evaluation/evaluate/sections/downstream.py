"""Section 4, downstream gain: segmenters (`cosyn.segmentation`) trained on (a) the real train tiles,
(b) real + synthetic (`--synthetic`, from `cosyn augment`), (c) the synthetic tiles alone (train on
synthetic, test on real), same budget and seeds, scored on the real split tiles at the data's native
mpp, beside known-bad controls. `paired_summary`, `controls` and `summary_markdown` are shared with
benchmarks/downstream_study.py."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from cosyn.augment import read_meta
from cosyn.data.dataset import resample_sample
from cosyn.data.formats import read_dataset
from cosyn.data.sample import Sample
from cosyn.evaluation.evaluate.config import EvalConfig
from cosyn.evaluation.evaluate.segmenters import native_real, trained_segmenter
from cosyn.evaluation.evaluate.tiles import RealData
from cosyn.evaluation.segmenter import Truth, score, truths
from cosyn.segmentation import Segmenter, SegmenterConfig, SegTile

DOWNSTREAM_METRICS = ("dice", "aji", "pq", "mpq_plus", "f1_d", "f1_c_mean")
TABLE_METRICS = ("pq", "mpq_plus", "aji")  # then per-class PQ
LABELS = {"pq": "PQ", "mpq_plus": "mPQ+", "aji": "AJI"}
BASELINE = "real"
SYNTHETIC_ONLY = "synthetic"


def downstream(cfg: EvalConfig, out: Path, real: RealData, mpp: float) -> dict[str, Any]:
    """Same budget, same seeds: real train tiles vs real + synthetic vs synthetic only, scored on the real
    split tiles, with the controls beside real seed 0. `mpp` (the model's) is not used: the segmenter
    works at the real data's own mpp."""
    real, seg_mpp = native_real(cfg)
    synthetic = read_synthetic(cfg.synthetic, real, seg_mpp)
    real_tiles = [SegTile.from_sample(s, seg_mpp) for s in real.train]
    syn_tiles = [SegTile.from_sample(s, seg_mpp) for s in synthetic]
    weights = None
    if cfg.synthetic_share is not None:
        share = cfg.synthetic_share
        weights = [(1 - share) / len(real_tiles)] * len(real_tiles) + [share / len(syn_tiles)] * len(syn_tiles)
    config = SegmenterConfig(real.classes.to_list(), seg_mpp)
    tests = truths(real.split, seg_mpp)
    syn_key = f"{len(syn_tiles)}:{Path(cfg.synthetic).resolve()}"
    runs: dict[str, dict[int, dict[str, Any]]] = {BASELINE: {}, "real+synthetic": {}, SYNTHETIC_ONLY: {}}
    known_bad: dict[str, dict[str, Any]] = {}
    for seed in range(cfg.seeds):
        train = replace(cfg.segmenter_train, seed=seed)
        a = trained_segmenter(out, f"real_seed{seed}", real_tiles, config, train, f"real:{len(real_tiles)}",
                              device=cfg.device)
        b = trained_segmenter(out, f"augmented_seed{seed}", real_tiles + syn_tiles, config, train,
                              f"real+synthetic:{len(real_tiles)}+{syn_key}:share={cfg.synthetic_share}", weights,
                              cfg.device)
        c = trained_segmenter(out, f"synthetic_seed{seed}", syn_tiles, config, train, f"synthetic:{syn_key}",
                              device=cfg.device)
        known_bad = known_bad or controls(a, config, tests)
        for arm, seg in ((BASELINE, a), ("real+synthetic", b), (SYNTHETIC_ONLY, c)):
            runs[arm][seed] = score(seg, tests, progress=True)
    summary = paired_summary(runs)
    return {
        "synthetic": str(cfg.synthetic), "synthetic_tiles": len(syn_tiles), "real_tiles": len(real_tiles),
        "synthetic_share": cfg.synthetic_share, "seeds": cfg.seeds, "budget": asdict(cfg.segmenter_train),
        "segmenter": config.to_dict(), "summary": _report_rows(summary), "paired": summary,
        "controls": known_bad,
        "runs": {arm: [by_seed[s] for s in sorted(by_seed)] for arm, by_seed in runs.items()},
    }


def shuffled(tiles: list[Truth]) -> list[Truth]:
    """Each image paired with the labels of the tile half the list away (another slide region)."""
    half = len(tiles) // 2
    return [Truth(t.image, tiles[(i + half) % len(tiles)].inst_map, tiles[(i + half) % len(tiles)].inst_classes)
            for i, t in enumerate(tiles)]


def controls(trained: Segmenter, config: SegmenterConfig, tests: list[Truth]) -> dict[str, dict[str, Any]]:
    """Known-bad references: an untrained segmenter, and `trained` scored against the labels of other
    tiles. A yardstick that does not rank these far below the trained segmenter cannot rank the arms."""
    return {"untrained": score(Segmenter.new(config, seed=0), tests),
            "labels_of_other_tiles": score(trained, shuffled(tests))}


def read_synthetic(folder: str | None, real: RealData, mpp: float) -> list[Sample]:
    """The synthetic tiles at `mpp`; refuses any made from a layout of an evaluated tile's source."""
    seq = read_dataset(folder, "folder")
    samples = [seq[i] for i in range(len(seq))]
    meta_dir = Path(folder) / "meta"
    if meta_dir.is_dir():
        origins = {read_meta(Path(folder), s.name).get("origin", {}).get("source") for s in samples}
        leaked = origins & real.split_sources
        if leaked:
            raise ValueError(f"{folder}: synthetic tiles were made from layouts of evaluated sources "
                             f"{sorted(leaked)[:5]}; make them with `cosyn augment --split train`")
    return [resample_sample(s, mpp) for s in samples]


def flat_metrics(scores: Mapping[str, Any]) -> dict[str, float]:
    """The summary figures of one `score` result, per-class PQ as pq_<class>."""
    flat = {m: float(scores[m]) for m in DOWNSTREAM_METRICS}
    flat.update({f"pq_{name}": float(v) for name, v in scores["pq_per_class"].items()})
    return flat


def _stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, float)
    return {"mean": float(np.nanmean(a)), "std": float(np.nanstd(a)), "n": int(a.size)}


def paired_summary(runs: Mapping[str, Mapping[int, Mapping[str, Any]]],
                   baseline: str = BASELINE) -> dict[str, Any]:
    """Per arm: mean and sd over its seeds of every figure. Per other arm: the per-seed differences
    from the baseline arm on the seeds both ran (paired: same seed, same budget), their mean and
    minimum, and the ratio of the arm's mean to the baseline's mean (for the synthetic-only arm,
    the train-on-synthetic score of Ravuri & Vinyals)."""
    flat = {arm: {seed: flat_metrics(s) for seed, s in by_seed.items()} for arm, by_seed in runs.items()}
    out: dict[str, Any] = {"arms": {}, "paired": {}}
    for arm, by_seed in flat.items():
        if not by_seed:
            continue
        keys = next(iter(by_seed.values())).keys()
        out["arms"][arm] = {"seeds": sorted(by_seed), **{k: _stats([r[k] for r in by_seed.values()]) for k in keys}}
    base = flat.get(baseline, {})
    for arm, by_seed in flat.items():
        shared = sorted(set(by_seed) & set(base))
        if arm == baseline or not shared:
            continue
        paired: dict[str, Any] = {"seeds": shared}
        for k in by_seed[shared[0]]:
            diffs = [by_seed[s][k] - base[s][k] for s in shared]
            base_mean = float(np.mean([base[s][k] for s in shared]))
            paired[k] = {"diffs": diffs, "mean": float(np.mean(diffs)), "min": float(np.min(diffs)),
                         "ratio": float(np.mean([by_seed[s][k] for s in shared]) / base_mean) if base_mean else None}
        out["paired"][arm] = paired
    return out


def summary_markdown(summary: Mapping[str, Any], known_bad: Mapping[str, Any] | None = None,
                     baseline: str = BASELINE) -> list[str]:
    """One Markdown table of a `paired_summary`: per arm the mean ± sd over seeds of PQ, mPQ+, AJI and
    per-class PQ; per other arm its per-seed differences from `baseline` (paired by seed) and the ratio
    of means (for the synthetic-only arm, the train-on-synthetic score); `known_bad` (`controls`' dict;
    entries that are not scores, such as which run they belong to, are skipped) beside them."""
    arms = summary["arms"]
    if not arms:
        return []
    metrics = [*TABLE_METRICS, *(k for k in next(iter(arms.values())) if k.startswith("pq_"))]
    rows = [[arm, _seeds(a["seeds"]), *(f"{a[m]['mean']:.3f} ± {a[m]['std']:.3f}" for m in metrics)]
            for arm, a in arms.items()]
    for arm, p in summary["paired"].items():
        rows.append([f"{arm} − {baseline}, per seed (mean)", _seeds(p["seeds"]),
                     *(", ".join(f"{d:+.3f}" for d in p[m]["diffs"]) + f" ({p[m]['mean']:+.3f})" for m in metrics)])
        rows.append([f"{arm} / {baseline}", _seeds(p["seeds"]),
                     *("n/a" if p[m]["ratio"] is None else f"{p[m]['ratio']:.2f}×" for m in metrics)])
    for name, c in (known_bad or {}).items():
        if isinstance(c, Mapping):
            flat = flat_metrics(c)
            rows.append([f"control: {name}", "–", *(f"{flat[m]:.3f}" for m in metrics)])
    header = ["arm", "seeds", *(LABELS.get(m, m.replace("pq_", "PQ ")) for m in metrics)]
    return ["| " + " | ".join(r) + " |" for r in [header, ["---"] * len(header), *rows]]


def _seeds(seeds: list[int]) -> str:
    return ", ".join(map(str, seeds))


def _report_rows(summary: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The rows report.md's downstream table shows: real and real + synthetic means ± sd, and the
    paired differences' mean ± sd."""
    real, aug = summary["arms"][BASELINE], summary["arms"]["real+synthetic"]
    paired = summary["paired"]["real+synthetic"]
    return {m: {"real_mean": real[m]["mean"], "real_std": real[m]["std"], "augmented_mean": aug[m]["mean"],
                "augmented_std": aug[m]["std"], "diff_mean": paired[m]["mean"],
                "diff_std": float(np.std(paired[m]["diffs"]))} for m in DOWNSTREAM_METRICS}
