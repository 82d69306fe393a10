"""Training and fine-tuning loop (nanoGPT-style: every knob lives in TrainConfig).

One command for 1 CPU process or `accelerate launch --num_processes N`. Run folder:
    RUN/run_config.json    the TrainConfig and pipeline config this run uses
    RUN/checkpoints/step_XXXXXXX/{model,ema,optim}.* + trainer.json   (atomic, last `keep` kept)
    RUN/metrics.jsonl      one line per `log_every` steps
    RUN/previews/step_XXXXXXX.png
    RUN/status.json        polled by the studio
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.training_utils import EMAModel
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from tqdm import tqdm

from cosyn.core.classes import ClassSet
from cosyn.data.dataset import CropDataset, PositionSampler, PreparedTile, prepare_tile, split_by_source
from cosyn.data.formats import read_dataset
from cosyn.data.sample import DataError
from cosyn.data.targets import prompt_vocabulary
from cosyn.io.fileio import atomic_dir, dataclass_from_dict
from cosyn.io.state_io import load_state, save_state
from cosyn.model.denoiser import DenoiserConfig, JointDenoiser
from cosyn.model.diffusion.categorical import MultinomialDiffusion, index_to_log_onehot
from cosyn.model.diffusion.gaussian import dist_to_model, image_to_model, min_snr_weight, training_scheduler
from cosyn.model.pipeline import CoSynPipeline, PipelineConfig
from cosyn.model.text import TextEncoder
from cosyn.model.text_cache import PromptCache, all_structure_prompts
from cosyn.training.class_mapping import remap_classes
from cosyn.training.previews import PreviewMaker
from cosyn.training.status import StatusFile

Log = Callable[[str], None]


class TrainingError(RuntimeError):
    """Training stopped for a reason the user must act on."""


@dataclass
class TrainConfig:
    data: str = ""
    out: str = "runs/default"
    format: str = "auto"
    init: str | None = None
    steps: int = 10000
    batch: int = 8
    lr: float = 5e-4
    warmup: int = 200
    weight_decay: float = 0.0
    crop: int = 64
    mpp: float = 0.5
    val_fraction: float = 0.15
    seed: int = 0
    save_every: int = 250
    keep: int = 2
    log_every: int = 10
    preview_every: int = 500
    preview_steps: int = 10
    ema_decay: float = 0.999
    text_drop: float = 0.1
    point_drop: float = 0.0
    w_image: float = 1.0
    w_dist: float = 1.0
    w_label: float = 1.0
    min_snr_gamma: float = 5.0
    ce_weight: float = 1.0
    grad_clip: float = 1.0
    bf16: bool = True
    threads: int = 0
    max_bad_fraction: float = 0.1
    workers: int = 0
    time_limit: float = 0.0
    text_cache: str | None = None
    denoiser: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        positive = ("steps", "batch", "crop", "save_every", "keep", "log_every", "preview_steps")
        bad = [f"{k}={getattr(self, k)}" for k in positive if int(getattr(self, k)) < 1]
        bad += [f"{k}={getattr(self, k)}" for k in ("lr", "mpp") if not float(getattr(self, k)) > 0]
        bad += [f"{k}={getattr(self, k)}" for k in ("text_drop", "point_drop", "val_fraction", "max_bad_fraction")
                if not 0 <= float(getattr(self, k)) < 1]
        if self.preview_every < 0 or self.warmup < 0 or self.workers < 0 or self.time_limit < 0:
            bad.append(f"preview_every={self.preview_every}, warmup={self.warmup}, workers={self.workers}, "
                       f"time_limit={self.time_limit} must be >= 0")
        if bad:
            raise ValueError(f"invalid training options: {', '.join(bad)}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return dataclass_from_dict(cls, d, "training options")


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
) -> tuple[JointDenoiser, PipelineConfig]:
    if cfg.init is None:
        pcfg = build_pipeline_config(cfg, classes, tissues)
        torch.manual_seed(cfg.seed)
        return JointDenoiser(pcfg.denoiser), pcfg
    base = CoSynPipeline.from_pretrained(cfg.init)
    if abs(base.config.mpp - cfg.mpp) > 1e-6:
        log(f"note: --init model works at {base.config.mpp} µm/px; training data is resampled to that")
        cfg.mpp = base.config.mpp
    model, pcfg = remap_classes(base.model, base.config, classes, log)
    pcfg.tissues = tuple(sorted(set(pcfg.tissues) | set(tissues)))
    pcfg.train_crop = cfg.crop
    return model, pcfg


# -- checkpoints -------------------------------------------------------------------------------------
def checkpoint_dirs(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob("step_*"))


def save_checkpoint(run: Path, step: int, model: nn.Module, ema: EMAModel, optimizer: torch.optim.Optimizer,
                    lr_sched: LRScheduler, keep: int) -> Path:
    """Everything needed to continue exactly, written to a temp folder and renamed into place,
    so a crash or a full disk never leaves a half checkpoint as the latest one."""
    root = run / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:07d}"
    try:
        with atomic_dir(final) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                      tmp / "model.safetensors")
            save_state(ema.state_dict(), tmp / "ema")
            save_state(optimizer.state_dict(), tmp / "optim")
            (tmp / "trainer.json").write_text(json.dumps({"step": step, "lr_sched": lr_sched.state_dict(),
                                                          "torch_rng": torch.get_rng_state().tolist()}))
    except (OSError, SafetensorError) as e:  # safetensors reports ENOSPC/EFBIG as its own error
        prev = checkpoint_dirs(run)
        raise TrainingError(f"could not write checkpoint at step {step} in {root} ({e}); "
                            f"the previous checkpoint {prev[-1].name if prev else '(none)'} is intact") from e
    for old in checkpoint_dirs(run)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(ckpt: Path, model: nn.Module, ema: EMAModel, optimizer: torch.optim.Optimizer,
                    lr_sched: LRScheduler) -> int:
    model.load_state_dict(load_file(ckpt / "model.safetensors"))
    ema.load_state_dict(load_state(ckpt / "ema"))
    optimizer.load_state_dict(load_state(ckpt / "optim"))
    meta = json.loads((ckpt / "trainer.json").read_text())
    lr_sched.load_state_dict(meta["lr_sched"])
    torch.set_rng_state(torch.tensor(meta["torch_rng"], dtype=torch.uint8))
    return int(meta["step"])


def truncate_metrics(path: Path, step: int) -> None:
    """Drop rows logged after the checkpoint a resume starts from, so the curve continues
    without the steps a crash threw away."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if (_row_step(line) or step + 1) <= step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, path)


def _row_step(line: str) -> int | None:
    """The step of one metrics.jsonl line; None for a line a kill cut short."""
    try:
        return int(json.loads(line)["step"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def ema_model(model: JointDenoiser, ema: EMAModel) -> JointDenoiser:
    """A copy of the model carrying the EMA weights (what is sampled and exported)."""
    copy = JointDenoiser(model.cfg).to(next(model.parameters()).device)
    copy.load_state_dict(model.state_dict())
    ema.copy_to(copy.parameters())
    return copy.eval()


# -- the loss ----------------------------------------------------------------------------------------
def joint_loss(model: nn.Module, batch: dict, text: torch.Tensor, mask: torch.Tensor, noise_sched: DDPMScheduler,
               categorical: MultinomialDiffusion,
               cfg: TrainConfig, gen: torch.Generator) -> dict[str, torch.Tensor]:
    # Everything random is drawn on the model's device with `gen` (a generator on that device):
    # on a GPU the noising of a large batch would otherwise cost more than the step itself.
    dev = next(model.parameters()).device
    x0 = torch.cat([image_to_model(batch["image"].to(dev)), dist_to_model(batch["dist"].to(dev))], 1)
    b, k = x0.shape[0], categorical.num_classes
    t = torch.randint(0, noise_sched.config.num_train_timesteps, (b,), generator=gen, device=dev)
    noise = torch.randn(x0.shape, generator=gen, device=dev)
    x_t = noise_sched.add_noise(x0, noise, t)
    target = noise_sched.get_velocity(x0, noise, t)
    log_x0 = index_to_log_onehot(batch["class_map"].to(dev), k)
    log_xt = categorical.q_sample(log_x0, t, generator=gen)
    points = batch["points"].to(dev)
    if cfg.point_drop > 0:
        keep = (torch.rand(b, generator=gen, device=dev) >= cfg.point_drop).view(b, 1, 1)
        points = points * keep
    out = model(x_t[:, :3], x_t[:, 3:], log_xt.exp(), points, t, text.to(dev), mask.to(dev))
    w = min_snr_weight(noise_sched.alphas_cumprod.to(dev)[t], cfg.min_snr_gamma)
    img = (F.mse_loss(out.v_image.float(), target[:, :3], reduction="none").mean((1, 2, 3)) * w).mean()
    dist = (F.mse_loss(out.v_dist.float(), target[:, 3:], reduction="none").mean((1, 2, 3)) * w).mean()
    label = categorical.loss(out.label_logits.float(), log_x0, log_xt, t, ce_weight=cfg.ce_weight).mean()
    total = cfg.w_image * img + cfg.w_dist * dist + cfg.w_label * label
    return {"loss": total, "image": img, "dist": dist, "label": label}


# -- the loop ----------------------------------------------------------------------------------------
class CosineWithWarmup:
    """LR factor per step: linear warmup, then cosine to 0 at `total` (diffusers' formula),
    with `total` open to change: a time-limited run shortens it once its speed is known."""

    def __init__(self, warmup: int, total: int) -> None:
        self.warmup = warmup
        self.total = total

    @property
    def total(self) -> int:
        return self._total

    @total.setter
    def total(self, steps: int) -> None:
        self._total = max(steps, self.warmup + 1)  # the cosine needs at least one step after warm-up

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return step / max(1, self.warmup)
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))


class TimeBudget:
    """Fits a run into `minutes`: times the steps of a probe window after start-up, then lowers
    the step count so the cosine schedule ends on time, and says when time is up.

    Checkpoints and previews after the probe are paid from the reserve (10% of the budget, at
    most 30 s); past the deadline the run saves and stops wherever the schedule is.
    """

    def __init__(self, minutes: float, start_step: int, probe: tuple[int, int] = (20, 120),
                 clock: Callable[[], float] = time.time) -> None:
        # the probe starts 20 steps in: the first steps pay for kernel selection and cold caches
        self.clock, self.probe = clock, probe
        self.deadline = clock() + minutes * 60 if minutes else None
        self.reserve_s = min(30.0, minutes * 6)
        self.start_step, self.t_probe = start_step, 0.0

    def observe(self, step: int) -> None:
        """Call once per finished step: starts the probe's clock at its first step."""
        if self.deadline is not None and step - self.start_step == self.probe[0]:
            self.t_probe = self.clock()

    def probe_ends(self, step: int) -> bool:
        """True at the one step where every rank computes its fitted total."""
        return self.deadline is not None and step - self.start_step == self.probe[1]

    def fitted_total(self, step: int, total: int) -> int | None:
        """At the probe's end, the step count that fits the time left, if below `total`; else None."""
        if not self.probe_ends(step):
            return None
        now = self.clock()
        rate = (self.probe[1] - self.probe[0]) / max(now - self.t_probe, 1e-9)
        fitted = step + int(rate * max(self.deadline - now - self.reserve_s, 0))
        return fitted if fitted < total else None

    def expired(self) -> bool:
        """Past the deadline (never without a time limit)."""
        return self.deadline is not None and self.clock() > self.deadline


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _StopFlag:
    """SIGINT/SIGTERM become a request to save and stop, until `restore` hands them back (train()
    also runs inside other programs: the studio's tests, a notebook)."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._previous = {sig: signal.signal(sig, self._set) for sig in _STOP_SIGNALS}

    def _set(self, signum, _frame) -> None:
        self.reason = f"received {signal.Signals(signum).name}"

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _ignore_stop_signals(_worker_id: int) -> None:
    """Ctrl-C, `timeout` and `kill -- -PGID` signal the whole process group: a data worker that died of
    it would crash the trainer before it could save. The trainer stops its workers itself."""
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train or fine-tune; returns the run folder. Safe to interrupt: SIGINT/SIGTERM save first."""
    from accelerate import Accelerator

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.backends.cudnn.benchmark = True  # crops have one fixed shape: let cuDNN pick its fastest kernels
    run = Path(cfg.out)
    # cpu=True lets torchrun start several CPU processes (gloo); on GPUs accelerate picks CUDA.
    acc = Accelerator(mixed_precision="bf16" if cfg.bf16 else "no", cpu=not torch.cuda.is_available())
    is_main = acc.is_main_process
    status = StatusFile(run / "status.json", enabled=is_main)
    log_path = run / "train.log"

    def log(msg: str) -> None:
        if is_main:
            tqdm.write(msg)
            with open(log_path, "a") as f:
                f.write(msg + "\n")

    run.mkdir(parents=True, exist_ok=True)
    stop = _StopFlag()
    try:
        status.update(state="loading", step=0, total=cfg.steps, pid=os.getpid())
        cfg_file = run / "run_config.json"
        ckpts = checkpoint_dirs(run) if resume else []
        train_tiles, val_tiles, classes, summary = load_tiles(cfg, log)
        log(f"data: {summary['samples']} samples, {summary['train_tiles']} train / {summary['val_tiles']} val "
            f"tiles (validation sources: {', '.join(summary['val_sources'])})")
        if ckpts and cfg_file.exists():
            # the run's own architecture: its checkpoint overwrites the weights, and --init may be gone by now
            pcfg = PipelineConfig.from_dict(json.loads(cfg_file.read_text())["pipeline"])
            model = JointDenoiser(pcfg.denoiser)
        else:
            model, pcfg = initial_model(cfg, classes, summary["tissues"], log)
        if is_main:
            write_run_config(cfg_file, cfg, pcfg, summary)
        log(f"model: {model.num_parameters() / 1e6:.2f}M parameters, {pcfg.denoiser.block_out_channels}")
        noise_sched = training_scheduler(pcfg.schedule)
        categorical = MultinomialDiffusion(noise_sched.alphas_cumprod, pcfg.denoiser.num_classes)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        schedule = CosineWithWarmup(cfg.warmup, cfg.steps)
        lr_sched = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        ema = EMAModel(model.parameters(), decay=cfg.ema_decay, use_ema_warmup=True, power=3 / 4, foreach=True)
        start = 0
        if is_main:  # a kill -9 during a save leaves its temp folder behind; it never became a checkpoint
            for stale in (run / "checkpoints").glob(".tmp_*"):
                shutil.rmtree(stale, ignore_errors=True)
        if ckpts:
            start = load_checkpoint(ckpts[-1], model, ema, optimizer, lr_sched)
            schedule.total = cfg.steps  # a resume may extend --steps
            if is_main:
                truncate_metrics(run / "metrics.jsonl", start)
            log(f"resumed from {ckpts[-1]} at step {start}")
        elif resume:
            log("no checkpoint to resume from: starting at step 0")
        model, optimizer = acc.prepare(model, optimizer)
        ema.to(acc.device)

        dataset = CropDataset(train_tiles, classes, cfg.crop, cfg.mpp, seed=cfg.seed)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=cfg.batch, num_workers=cfg.workers, worker_init_fn=_ignore_stop_signals,
            sampler=PositionSampler(start * cfg.batch, acc.process_index, acc.num_processes),
        )
        tile_tissues = sorted({t.tissue or prompt_vocabulary()["default_tissue"] for t in train_tiles + val_tiles})
        text_encoder = prompt_encoder(cfg, pcfg, tile_tissues)
        previews = PreviewMaker(val_tiles or train_tiles, pcfg, text_encoder, run / "previews") if is_main else None
        bar = tqdm(total=cfg.steps, initial=start, disable=not is_main, desc="training", dynamic_ncols=True)
        t_last, step_last = time.time(), start
        step = start
        budget = TimeBudget(cfg.time_limit, start)
        batches = iter(loader)
        while step < cfg.steps:
            batch = next(batches)
            step += 1
            seed = cfg.seed * 1_000_003 + step * 97 + acc.process_index
            gen = torch.Generator(acc.device).manual_seed(seed)
            # a stream of its own: on the CPU, `gen` with the same seed would tie text drop to the timesteps
            drop_gen = torch.Generator().manual_seed(seed + 2**40)
            drop = torch.rand(len(batch["prompt"]), generator=drop_gen) < cfg.text_drop
            prompts = ["" if d else p for p, d in zip(batch["prompt"], drop.tolist(), strict=True)]
            text, mask = text_encoder.encode(prompts)
            with acc.autocast():
                losses = joint_loss(model, batch, text, mask, noise_sched, categorical, cfg, gen)
            if not torch.isfinite(losses["loss"]):
                prev = checkpoint_dirs(run)
                raise TrainingError(f"loss became {losses['loss'].item()} at step {step}; stopped. Last good "
                                    f"checkpoint: {prev[-1] if prev else '(none)'}. Try a lower --lr.")
            acc.backward(losses["loss"])
            if cfg.grad_clip:
                acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            lr_sched.step()
            optimizer.zero_grad(set_to_none=True)
            ema.step(acc.unwrap_model(model).parameters())
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                # which data every rank consumed: shows ranks read disjoint positions
                positions = acc.gather(batch["position"].to(acc.device)).view(acc.num_processes, -1).tolist()
                now = time.time()
                rate = (step - step_last) / max(now - t_last, 1e-9)
                t_last, step_last = now, step
                vals = {k: float(v.detach()) for k, v in losses.items()}
                bar.set_postfix(loss=f"{vals['loss']:.4f}", it_s=f"{rate:.2f}")
                if is_main:
                    with open(run / "metrics.jsonl", "a") as f:
                        f.write(json.dumps({"step": step, **vals, "lr": lr_sched.get_last_lr()[0],
                                            "steps_per_s": rate, "samples_per_s": rate * cfg.batch
                                            * acc.num_processes, "time": now, "positions": positions}) + "\n")
                    status.update(state="running", step=step, eta_s=(cfg.steps - step) / max(rate, 1e-9),
                                  loss=vals["loss"])
            budget.observe(step)
            fitted = budget.fitted_total(step, cfg.steps)
            if acc.num_processes > 1 and budget.probe_ends(step):  # ranks ran at slightly different speeds
                fitted = slowest_rank(fitted or cfg.steps, acc.device)
            if fitted is not None and fitted < cfg.steps:
                log(f"time limit {cfg.time_limit} min: {fitted} steps fit, instead of {cfg.steps}")
                cfg.steps = bar.total = fitted
                schedule.total = fitted
                status.update(total=fitted)
                if is_main:  # so that --resume continues the fitted schedule
                    write_run_config(cfg_file, cfg, pcfg, summary)
            if budget.expired() and stop.reason is None:
                stop.reason = f"time limit of {cfg.time_limit} min reached"
            stopping = stop.reason is not None
            if acc.num_processes > 1:  # every rank must take the same save-and-stop branch, or they deadlock
                stopping = bool(acc.reduce(torch.tensor(int(stopping), device=acc.device), "max").item())
            if step % cfg.save_every == 0 or step == cfg.steps or stopping:
                acc.wait_for_everyone()
                if is_main:
                    save_checkpoint(run, step, acc.unwrap_model(model), ema, optimizer, lr_sched, cfg.keep)
                    status.update(last_checkpoint=step)
            if is_main and cfg.preview_every and (step % cfg.preview_every == 0 or step == cfg.steps):
                path = previews.render(ema_model(acc.unwrap_model(model), ema), step, cfg.preview_steps)
                status.update(last_preview=str(path))
            if stopping:
                log(f"{stop.reason or 'another rank stopped'}: saved step {step} and stopped")
                status.update(state="stopped", step=step)
                return run
        bar.close()
        status.update(state="finished", step=step, eta_s=0)
        return run
    except Exception as e:
        status.update(state="failed", last_error=str(e))
        raise
    finally:
        stop.restore()


def write_run_config(path: Path, cfg: TrainConfig, pcfg: PipelineConfig, data: dict[str, Any]) -> None:
    path.write_text(json.dumps({"train": asdict(cfg), "pipeline": pcfg.to_dict(), "data": data}, indent=1))


def slowest_rank(steps: int, device: torch.device) -> int:
    """The smallest of every rank's `steps` (accelerate's reduce only sums or takes the max)."""
    value = torch.tensor(steps, device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MIN)
    return int(value.item())


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


# -- export ------------------------------------------------------------------------------------------
def export_checkpoint(run: str | Path, out: str | Path, dtype: torch.dtype = torch.float16,
                      overwrite: bool = False) -> Path:
    """The design's loadable folder from the run's latest EMA weights, with a model card.

    An existing `out` (its weights, card and evaluation) is replaced whole, only with `overwrite`."""
    from cosyn.training.model_card import model_card_text

    run, out = Path(run), Path(out)
    if out.exists() and not overwrite:
        raise TrainingError(f"{out} exists; pass --overwrite to replace it (its weights, model card and "
                            "evaluation go with it)")
    ckpts = checkpoint_dirs(run)
    if not ckpts:
        raise TrainingError(f"{run}: no checkpoints to export")
    meta = json.loads((run / "run_config.json").read_text())
    pcfg = PipelineConfig.from_dict(meta["pipeline"])
    model = JointDenoiser(pcfg.denoiser)
    ema = EMAModel(model.parameters())
    ema.load_state_dict(load_state(ckpts[-1] / "ema"))
    ema.copy_to(model.parameters())
    step = json.loads((ckpts[-1] / "trainer.json").read_text())["step"]
    card = model_card_text(out, run, step, meta)
    CoSynPipeline(model, pcfg).save_pretrained(out, dtype=dtype,
                                               extras=lambda tmp: (tmp / "MODEL_CARD.md").write_text(card))
    return out
