"""`cosyn train`'s second stage: after the base model, its refiner (cosyn.refiner.training) on the same
data, into RUN/refiner/, resumable like the base; and the refiner an exported checkpoint carries."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from cosyn.model.pipeline import REFINER_DIR, PipelineConfig
from cosyn.refiner.stage import Refiner, RefinerError, check_follows
from cosyn.refiner.training import RefinerTrainConfig, train_refiner
from cosyn.training.config import TrainConfig, TrainingError

RUN_SUBDIR = "refiner"  # RUN/refiner/{state, refiner, train_config.json}


def refiner_config(cfg: TrainConfig, run: Path) -> RefinerTrainConfig:
    """The refiner's training options: the base run's data, split, seed, threads and µm/px (the one the run
    recorded: a fine-tune takes its --init's), then cfg.refiner."""
    base_mpp = json.loads((run / "run_config.json").read_text())["pipeline"]["mpp"]
    opts = {"data": cfg.data, "out": str(run / RUN_SUBDIR), "steps": cfg.refiner_steps, "base_mpp": base_mpp,
            "val_fraction": cfg.val_fraction, "seed": cfg.seed, "threads": cfg.threads or None, **cfg.refiner}
    try:
        return RefinerTrainConfig.from_dict(opts)
    except (TypeError, ValueError) as e:
        raise TrainingError(f"refiner options: {e}") from None


def train_refiner_stage(cfg: TrainConfig, run: Path, progress: Callable[[int, int], None]) -> Path:
    """Train (or resume) the run's refiner; its folder."""
    try:
        return train_refiner(refiner_config(cfg, run), progress=progress)
    except RefinerError as e:
        raise TrainingError(str(e)) from None


def refiner_for_export(run: Path, meta: dict, pcfg: PipelineConfig) -> Refiner | None:
    """The refiner an export of `run` carries: the one the run trained, else its --init checkpoint's
    (fine-tuning the base keeps its classes and µm/px, so the stage still follows it), else none."""
    trained = run / RUN_SUBDIR / "refiner"
    init = meta.get("train", {}).get("init")
    for folder in (trained, Path(init) / REFINER_DIR if init else None):
        if folder is not None and (folder / "config.json").is_file():
            try:
                refiner = Refiner.from_pretrained(folder)
                check_follows(refiner, list(pcfg.classes), pcfg.mpp, folder)
            except RefinerError as e:
                raise TrainingError(str(e)) from None
            return refiner
    return None

