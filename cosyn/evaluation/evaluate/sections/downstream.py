"""Section 4, downstream gain: segmenters trained on (a) real train tiles, (b) real + synthetic
(`--synthetic`, from `cosyn augment`), same budget and seeds; scored on the real split tiles."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from cosyn.augment import read_meta
from cosyn.data.dataset import resample_sample
from cosyn.data.formats import read_dataset
from cosyn.data.sample import Sample
from cosyn.evaluation.evaluate.config import EvalConfig
from cosyn.evaluation.evaluate.segmenters import trained_segmenter, truths
from cosyn.evaluation.evaluate.tiles import RealData
from cosyn.evaluation.segmenter import SegmenterConfig, SegTile, SegTrainConfig, score

DOWNSTREAM_METRICS = ("dice", "aji", "pq", "mpq_plus", "f1_d", "f1_c_mean")


def downstream(cfg: EvalConfig, out: Path, real: RealData, mpp: float) -> dict[str, Any]:
    """Same budget, same seeds: real train tiles vs real + synthetic, scored on the real split tiles."""
    synthetic = read_synthetic(cfg.synthetic, real, mpp)
    real_tiles = [SegTile.from_sample(s, mpp) for s in real.train]
    syn_tiles = [SegTile.from_sample(s, mpp) for s in synthetic]
    weights = None
    if cfg.synthetic_share is not None:
        share = cfg.synthetic_share
        weights = [(1 - share) / len(real_tiles)] * len(real_tiles) + [share / len(syn_tiles)] * len(syn_tiles)
    config = SegmenterConfig(real.classes.to_list(), mpp, cfg.segmenter_widths)
    tests = truths(real.split, mpp)
    runs: dict[str, list[dict[str, Any]]] = {"real": [], "real+synthetic": []}
    for seed in range(cfg.seeds):
        train = SegTrainConfig(**{**asdict(cfg.segmenter_train), "seed": seed})
        a = trained_segmenter(out, f"real_seed{seed}", real_tiles, config, train, f"real:{len(real_tiles)}",
                              device=cfg.device)
        b = trained_segmenter(out, f"augmented_seed{seed}", real_tiles + syn_tiles, config, train,
                              f"real+synthetic:{len(real_tiles)}+{len(syn_tiles)}:{Path(cfg.synthetic).resolve()}"
                              f":share={cfg.synthetic_share}", weights, cfg.device)
        runs["real"].append(score(a, tests, progress=True))
        runs["real+synthetic"].append(score(b, tests, progress=True))
    return {
        "synthetic": str(cfg.synthetic), "synthetic_tiles": len(syn_tiles), "real_tiles": len(real_tiles),
        "synthetic_share": cfg.synthetic_share, "seeds": cfg.seeds, "budget": asdict(cfg.segmenter_train),
        "summary": _gain_summary(runs), "runs": runs,
    }


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


def _gain_summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    out = {}
    for m in DOWNSTREAM_METRICS:
        a = np.array([r[m] for r in runs["real"]], float)
        b = np.array([r[m] for r in runs["real+synthetic"]], float)
        out[m] = {"real_mean": float(a.mean()), "real_std": float(a.std()), "augmented_mean": float(b.mean()),
                  "augmented_std": float(b.std()), "diff_mean": float((b - a).mean()), "diff_std": float((b - a).std())}
    return out
