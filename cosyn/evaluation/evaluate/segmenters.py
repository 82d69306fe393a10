"""The segmenters the consistency and downstream sections train, kept in OUT/segmenters/NAME and
reused by later runs that would train them the same way on the same data."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from cosyn.data.dataset import resample_sample
from cosyn.data.sample import Sample
from cosyn.evaluation.evaluate.config import EvalConfig, log
from cosyn.evaluation.evaluate.tiles import RealData
from cosyn.evaluation.segmenter import (
    CONFIG_NAME,
    Segmenter,
    SegmenterConfig,
    SegTile,
    SegTrainConfig,
    Truth,
    train_segmenter,
)


def trained_segmenter(out: Path, name: str, tiles: Sequence[SegTile], config: SegmenterConfig,
                      train: SegTrainConfig, data_key: str, weights: Sequence[float] | None = None,
                      device: str = "cpu") -> Segmenter:
    """Train, or reuse OUT/segmenters/NAME when it was trained with the same settings on the same data."""
    folder = out / "segmenters" / name
    wanted = {**asdict(train), "tiles": len(tiles), "data": data_key}
    if (folder / CONFIG_NAME).is_file():
        seg = Segmenter.load(folder)
        if seg.config == config and all(seg.train_info.get(k) == v for k, v in wanted.items()):
            log(f"reusing segmenter {folder}")
            return seg
    log(f"training segmenter {name}: {train.steps} steps on {len(tiles)} tiles")
    t0 = time.perf_counter()
    seg = train_segmenter(tiles, config, train, weights, desc=name, device=device)
    seg.train_info.update({"data": data_key, "seconds": round(time.perf_counter() - t0, 1)})
    seg.save(folder)
    return seg


def real_segmenter(cfg: EvalConfig, out: Path, real: RealData, mpp: float) -> Segmenter:
    """--segmenter when given, else the seed-0 segmenter on the real train tiles (downstream's first
    real run, so the two sections share it)."""
    if cfg.segmenter:
        seg = Segmenter.load(cfg.segmenter)
        log(f"using segmenter {cfg.segmenter} ({seg.config.mpp} µm/px)")
        return seg
    tiles = [SegTile.from_sample(s, mpp) for s in real.train]
    config = SegmenterConfig(real.classes.to_list(), mpp, cfg.segmenter_widths)
    train = SegTrainConfig(**{**asdict(cfg.segmenter_train), "seed": 0})
    return trained_segmenter(out, "real_seed0", tiles, config, train, f"real:{len(tiles)}", device=cfg.device)


def truths(samples: Sequence[Sample], mpp: float) -> list[Truth]:
    return [Truth.from_sample(resample_sample(s, mpp)) for s in samples]
