"""The segmenters the consistency and downstream sections train, kept in OUT/segmenters/NAME (resumable
there) and reused by later runs that would train them the same way on the same data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

from cosyn.data.formats import read_dataset
from cosyn.evaluation.evaluate.config import EvalConfig, log
from cosyn.evaluation.evaluate.tiles import RealData, load_real
from cosyn.segmentation import Segmenter, SegmenterConfig, SegTile, SegTrainConfig, train_segmenter
from cosyn.segmentation.segmenter import CONFIG_NAME


def native_real(cfg: EvalConfig) -> tuple[RealData, float]:
    """The real tiles at their own mpp (the segmenter's working resolution) and that mpp."""
    seq = read_dataset(cfg.data, cfg.format)
    mpp = (seq[0].mpp if len(seq) else None) or SegmenterConfig.mpp
    return load_real(cfg, mpp), mpp


def trained_segmenter(out: Path, name: str, tiles: Sequence[SegTile], config: SegmenterConfig,
                      train: SegTrainConfig, data_key: str, weights: Sequence[float] | None = None,
                      device: str = "cpu") -> Segmenter:
    """Train (resuming an interrupted run), or reuse OUT/segmenters/NAME when it was trained with the
    same settings on the same data."""
    folder = out / "segmenters" / name
    wanted = {**asdict(train), "tiles": len(tiles), "data": data_key}
    if (folder / CONFIG_NAME).is_file():
        seg = Segmenter.load(folder)
        if seg.config == config and all(seg.train_info.get(k) == v for k, v in wanted.items()):
            log(f"reusing segmenter {folder}")
            return seg
    log(f"training segmenter {name}: {train.steps} steps on {len(tiles)} tiles")
    return train_segmenter(tiles, config, train, weights, folder=folder, desc=name, device=device, data_key=data_key)


def real_segmenter(cfg: EvalConfig, out: Path, real: RealData, mpp: float) -> Segmenter:
    """--segmenter when given, else the seed-0 segmenter on the real train tiles at their own mpp
    (downstream's first real run, so the two sections share it). `real` and `mpp` (the model's) are
    not used for training: the segmenter learns at the data's native resolution."""
    if cfg.segmenter:
        seg = Segmenter.load(cfg.segmenter)
        log(f"using segmenter {cfg.segmenter} ({seg.config.mpp} µm/px)")
        return seg
    native, seg_mpp = native_real(cfg)
    tiles = [SegTile.from_sample(s, seg_mpp) for s in native.train]
    config = SegmenterConfig(native.classes.to_list(), seg_mpp)
    train = replace(cfg.segmenter_train, seed=0)
    return trained_segmenter(out, "real_seed0", tiles, config, train, f"real:{len(tiles)}", device=cfg.device)
