"""What a run needs before its first step: the data read and resampled, the model built or
taken from --init, the prompt encoder, and the run's recorded configuration."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from diffusers import DDPMScheduler
from diffusers.training_utils import EMAModel
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader
from tqdm import tqdm

from cosyn.core.classes import ClassSet
from cosyn.data.dataset import CropDataset, PositionSampler, PreparedTile, prepare_tile, split_by_source
from cosyn.data.formats import read_dataset
from cosyn.data.sample import DataError
from cosyn.data.targets import prompt_vocabulary
from cosyn.io.fileio import atomic_write, remove_leftovers_in
from cosyn.model.checkpoint import PipelineConfig
from cosyn.model.denoiser import DenoiserConfig, JointDenoiser
from cosyn.model.diffusion.categorical import MultinomialDiffusion
from cosyn.model.diffusion.gaussian import training_scheduler
from cosyn.model.pipeline import CoSynPipeline
from cosyn.model.text import TextEncoder
from cosyn.model.text_cache import PromptCache, all_structure_prompts
from cosyn.training.checkpoints import checkpoint_dirs, load_checkpoint, truncate_metrics
from cosyn.training.class_mapping import remap_classes
from cosyn.training.config import Log, TrainConfig, TrainingError
from cosyn.training.previews import PreviewMaker
from cosyn.training.schedule import CosineWithWarmup
from cosyn.training.status import StatusFile
from cosyn.training.stopping import ignore_stop_signals

if TYPE_CHECKING:
    from accelerate import Accelerator  # imported by train() itself: it is slow to import


# -- data --------------------------------------------------------------------------------------------
def load_tiles(cfg: TrainConfig, log: Log) -> tuple[list[PreparedTile], list[PreparedTile], ClassSet, dict[str, Any]]:
    """Read, split by source and resample the dataset. Unreadable samples are skipped and
    counted; past `max_bad_fraction` the run refuses to start."""
    samples, bad = [], []
    reader = read_dataset(cfg.data, cfg.format)
    for i in tqdm(range(len(reader)), desc="reading dataset", leave=False):
        try:
            samples.append(reader[i])
        except DataError as e:
            bad.append(str(e))
    total = len(samples) + len(bad)
    for msg in bad:
        log(f"skipped unreadable sample: {msg}")
    if not samples:
        raise TrainingError(f"{cfg.data}: no readable samples ({len(bad)} unreadable)")
    if len(bad) / total > cfg.max_bad_fraction:
        raise TrainingError(f"{cfg.data}: {len(bad)} of {total} samples are unreadable, over the "
                            f"{cfg.max_bad_fraction:.0%} threshold; first: {bad[0]}")
    train_idx, val_idx = split_by_source(samples, cfg.val_fraction, cfg.seed)
    prep = [prepare_tile(s, cfg.mpp) for s in tqdm(samples, desc=f"resampling to {cfg.mpp} µm/px", leave=False)]
    summary = {
        "data": str(cfg.data), "samples": len(samples), "unreadable": len(bad),
        "train_tiles": len(train_idx), "val_tiles": len(val_idx),
        "val_sources": sorted({samples[i].source or samples[i].name for i in val_idx}),
        "tissues": sorted({s.tissue for s in samples if s.tissue}),
    }
    return [prep[i] for i in train_idx], [prep[i] for i in val_idx], samples[0].classes, summary


# -- model -------------------------------------------------------------------------------------------
def build_pipeline_config(cfg: TrainConfig, classes: ClassSet, tissues: list[str]) -> PipelineConfig:
    den = DenoiserConfig.from_dict({**cfg.denoiser, "num_classes": classes.num_classes})
    return PipelineConfig(den, classes.to_list(), mpp=cfg.mpp, tissues=tuple(tissues) or ("tissue",),
                          train_crop=cfg.crop)


def initial_model(
    cfg: TrainConfig, classes: ClassSet, tissues: list[str], log: Log
) -> tuple[JointDenoiser, PipelineConfig, TrainConfig]:
    """The model a new run starts from, its pipeline config, and `cfg` resolved against it (a copy:
    an --init model keeps the µm/px it was trained at)."""
    if cfg.init is None:
        pcfg = build_pipeline_config(cfg, classes, tissues)
        torch.manual_seed(cfg.seed)
        return JointDenoiser(pcfg.denoiser), pcfg, cfg
    base = CoSynPipeline.from_pretrained(cfg.init)
    if abs(base.config.mpp - cfg.mpp) > 1e-6:
        log(f"note: --init model works at {base.config.mpp} µm/px; training data is resampled to that")
        cfg = replace(cfg, mpp=base.config.mpp)
    model, pcfg = remap_classes(base.model, base.config, classes, log)
    pcfg.tissues = tuple(sorted(set(pcfg.tissues) | set(tissues)))
    pcfg.train_crop = cfg.crop
    return model, pcfg, cfg


def prompt_encoder(cfg: TrainConfig, pcfg: PipelineConfig, tissues: list[str]) -> TextEncoder | PromptCache:
    """The text encoder, or the precomputed prompt cache where one is given. A cache must hold
    every prompt the data can draw (`tissues`: the tiles' own): checked now, not hours in."""
    if not cfg.text_cache:
        return TextEncoder(pcfg.text_encoder)
    try:
        cache = PromptCache(cfg.text_cache)
    except ValueError as e:
        raise TrainingError(f"text_cache: {e}") from None
    if cache.name != pcfg.text_encoder:
        raise TrainingError(f"{cfg.text_cache} was encoded with {cache.name!r}, the model uses {pcfg.text_encoder!r}")
    missing = sorted(set(all_structure_prompts(ClassSet(tuple(pcfg.classes)), tissues)) - cache.prompts)
    if missing:
        raise TrainingError(f"{cfg.text_cache} lacks {len(missing)} prompt(s) this data can draw, e.g. "
                            f"{missing[0]!r}; write it again with `cosyn prompt-cache` from this model")
    return cache


def write_run_config(path: Path, cfg: TrainConfig, pcfg: PipelineConfig, data: dict[str, Any]) -> None:
    """run_config.json, replaced atomically: a kill mid-write leaves the previous one for --resume."""
    text = json.dumps({"train": asdict(cfg), "pipeline": pcfg.to_dict(), "data": data}, indent=1)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


# -- the run -----------------------------------------------------------------------------------------
@dataclass
class Session:
    """Everything the loop works with. `cfg` is the run's resolved copy of the caller's config
    (--init's mpp, a time limit's fitted step count); the caller's own is never changed."""

    cfg: TrainConfig
    run: Path
    acc: Accelerator
    log: Log
    status: StatusFile
    pcfg: PipelineConfig
    summary: dict[str, Any]
    model: nn.Module
    ema: EMAModel
    optimizer: torch.optim.Optimizer
    schedule: CosineWithWarmup
    lr_sched: LRScheduler
    noise_sched: DDPMScheduler
    categorical: MultinomialDiffusion
    start: int = 0
    # set once the start step is known: the loader starts at its position
    loader: DataLoader | None = None
    text_encoder: TextEncoder | PromptCache | None = None
    previews: PreviewMaker | None = None  # the main process's only

    @property
    def config_file(self) -> Path:
        return self.run / "run_config.json"

    def record_config(self) -> None:
        """Rewrite run_config.json (main process only): what --resume continues from."""
        if self.acc.is_main_process:
            write_run_config(self.config_file, self.cfg, self.pcfg, self.summary)


def set_up(cfg: TrainConfig, resume: bool, run: Path, acc: Accelerator, log: Log, status: StatusFile) -> Session:
    """Data, model, optimiser and loader of a new or resumed run, placed on the accelerator."""
    ckpts = checkpoint_dirs(run) if resume else []
    train_tiles, val_tiles, classes, summary = load_tiles(cfg, log)
    log(f"data: {summary['samples']} samples, {summary['train_tiles']} train / {summary['val_tiles']} val "
        f"tiles (validation sources: {', '.join(summary['val_sources'])})")
    cfg_file = run / "run_config.json"
    if ckpts and cfg_file.exists():
        # the run's own architecture: its checkpoint overwrites the weights, and --init may be gone by now
        pcfg = PipelineConfig.from_dict(json.loads(cfg_file.read_text())["pipeline"])
        model = JointDenoiser(pcfg.denoiser)
    else:
        model, pcfg, cfg = initial_model(cfg, classes, summary["tissues"], log)
    log(f"model: {model.num_parameters() / 1e6:.2f}M parameters, {pcfg.denoiser.block_out_channels}")
    noise_sched = training_scheduler(pcfg.schedule)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = CosineWithWarmup(cfg.warmup, cfg.steps)
    tile_tissues = sorted({t.tissue or prompt_vocabulary()["default_tissue"] for t in train_tiles + val_tiles})
    session = Session(
        cfg=cfg, run=run, acc=acc, log=log, status=status, pcfg=pcfg, summary=summary, model=model,
        ema=EMAModel(model.parameters(), decay=cfg.ema_decay, use_ema_warmup=True, power=3 / 4, foreach=True),
        optimizer=optimizer, schedule=schedule, lr_sched=torch.optim.lr_scheduler.LambdaLR(optimizer, schedule),
        noise_sched=noise_sched,
        categorical=MultinomialDiffusion(noise_sched.alphas_cumprod, pcfg.denoiser.num_classes),
    )
    session.record_config()
    session.start = resume_from(session, ckpts, resume)
    session.model, session.optimizer = acc.prepare(session.model, session.optimizer)
    session.ema.to(acc.device)
    session.loader = DataLoader(
        CropDataset(train_tiles, classes, cfg.crop, cfg.mpp, seed=cfg.seed),
        batch_size=cfg.batch, num_workers=cfg.workers, worker_init_fn=ignore_stop_signals,
        sampler=PositionSampler(session.start * cfg.batch, acc.process_index, acc.num_processes),
    )
    session.text_encoder = prompt_encoder(cfg, pcfg, tile_tissues)
    if acc.is_main_process:
        session.previews = PreviewMaker(val_tiles or train_tiles, pcfg, session.text_encoder, run / "previews")
    return session


def resume_from(session: Session, ckpts: list[Path], resume: bool) -> int:
    """Load the latest checkpoint into the session (weights, EMA, optimiser, schedule, RNG); the
    step it holds, or 0 for a new run."""
    run, log = session.run, session.log
    if session.acc.is_main_process:  # a kill -9 during a write leaves its temp file or folder; it never became one
        remove_leftovers_in(run)  # the run folder and its checkpoints/, previews/
    if not ckpts:
        if resume:
            log("no checkpoint to resume from: starting at step 0")
        return 0
    start = load_checkpoint(ckpts[-1], session.model, session.ema, session.optimizer, session.lr_sched)
    session.schedule.total = session.cfg.steps  # a resume may extend --steps
    if session.acc.is_main_process:
        truncate_metrics(run / "metrics.jsonl", start)
    log(f"resumed from {ckpts[-1]} at step {start}")
    return start

