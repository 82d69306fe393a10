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
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from cosyn.io.guards import refuse_overlap
from cosyn.model.checkpoint import unusable_weights
from cosyn.stages.registry import STAGE_DIR
from cosyn.training.checkpoints import WEIGHT_LIMIT, checkpoint_dirs, ema_model, save_checkpoint
from cosyn.training.config import TrainConfig, TrainingError
from cosyn.training.loss import joint_loss
from cosyn.training.schedule import TimeBudget, slowest_rank
from cosyn.training.setup import Session, set_up
from cosyn.training.status import StatusFile
from cosyn.training.stopping import StopFlag

# What a run writes into its folder: their presence makes the folder a run that only --resume continues and
# only --overwrite replaces (the texture bank is built from the run's data, so it goes with the run).
RUN_FILES = ("run_config.json", "checkpoints", "metrics.jsonl", "status.json", "train.log", "previews",
             STAGE_DIR)


def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False) -> Path:
    """Train or fine-tune; returns the run folder. Safe to interrupt: SIGINT/SIGTERM save first. A folder
    that already holds a run is continued with `resume`, or deleted and started again with `overwrite`;
    without either it is refused, untouched."""
    from accelerate import Accelerator

    claim_run(Path(cfg.out), cfg.data, resume, overwrite)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.backends.cudnn.benchmark = True  # crops have one fixed shape: let cuDNN pick its fastest kernels
    run = Path(cfg.out)
    # cpu=True lets torchrun start several CPU processes (gloo); on GPUs accelerate picks CUDA.
    acc = Accelerator(mixed_precision="bf16" if cfg.bf16 else "no", cpu=not torch.cuda.is_available())
    status = StatusFile(run / "status.json", enabled=acc.is_main_process)
    log_path = run / "train.log"

    def log(msg: str) -> None:
        if acc.is_main_process:
            tqdm.write(msg)
            with open(log_path, "a") as f:
                f.write(msg + "\n")

    run.mkdir(parents=True, exist_ok=True)
    stop = StopFlag()
    try:
        status.update(state="loading", step=0, total=cfg.steps, pid=os.getpid())
        return _loop(set_up(cfg, resume, run, acc, log, status), stop)
    except Exception as e:
        status.update(state="failed", last_error=str(e))
        raise
    finally:
        stop.restore()


def claim_run(run: Path, data: str, resume: bool, overwrite: bool) -> None:
    """Refuse to mix a new run into an earlier one (its metrics appended, its config rewritten, its checkpoints
    pruned by the new ones), and clear the earlier one first when `overwrite` says so."""
    if resume and overwrite:
        raise TrainingError("--resume continues the run in --out and --overwrite deletes it: pass one of them")
    if data:
        refuse_overlap(data, run, "--out")  # --overwrite must never reach the data
    found = [name for name in RUN_FILES if (run / name).exists()]
    if not found or resume:
        return
    if not overwrite:
        raise TrainingError(f"{run} already holds a run ({', '.join(found)}); pass --resume to continue it, or "
                            "--overwrite to delete it and start again (or choose another --out)")
    for name in found:
        path = run / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _loop(s: Session, stop: StopFlag) -> Path:
    """Steps until the schedule ends, a time limit runs out or a stop signal comes; saves on the way."""
    acc, status = s.acc, s.status
    bar = tqdm(total=s.cfg.steps, initial=s.start, disable=not acc.is_main_process, desc="training",
               dynamic_ncols=True)
    rate = _Rate(s.start)
    budget = TimeBudget(s.cfg.time_limit, s.start)
    batches = iter(s.loader)
    step = s.start
    while step < s.cfg.steps:
        batch = next(batches)
        step += 1
        losses = _step(s, batch, step)
        bar.update(1)
        if step % s.cfg.log_every == 0 or step == s.cfg.steps:
            _log_metrics(s, step, batch, losses, rate, bar)
        _fit_to_time_limit(s, budget, step, bar)
        if budget.expired() and stop.reason is None:
            stop.reason = f"time limit of {s.cfg.time_limit} min reached"
        stopping = stop.reason is not None
        if acc.num_processes > 1:  # every rank must take the same save-and-stop branch, or they deadlock
            stopping = bool(acc.reduce(torch.tensor(int(stopping), device=acc.device), "max").item())
        _save(s, step, stopping)
        if stopping:
            s.log(f"{stop.reason or 'another rank stopped'}: saved step {step} and stopped")
            status.update(state="stopped", step=step)
            return s.run
    bar.close()
    status.update(state="finished", step=step, eta_s=0)
    return s.run


def _step(s: Session, batch: dict[str, Any], step: int) -> dict[str, torch.Tensor]:
    """One optimiser step on `batch`; its losses."""
    acc, cfg = s.acc, s.cfg
    seed = cfg.seed * 1_000_003 + step * 97 + acc.process_index
    gen = torch.Generator(acc.device).manual_seed(seed)
    # a stream of its own: on the CPU, `gen` with the same seed would tie text drop to the timesteps
    drop_gen = torch.Generator().manual_seed(seed + 2**40)
    drop = torch.rand(len(batch["prompt"]), generator=drop_gen) < cfg.text_drop
    prompts = ["" if d else p for p, d in zip(batch["prompt"], drop.tolist(), strict=True)]
    text, mask = s.text_encoder.encode(prompts)
    with acc.autocast():
        losses = joint_loss(s.model, batch, text, mask, s.noise_sched, s.categorical, cfg, gen)
    if not torch.isfinite(losses["loss"]):
        prev = checkpoint_dirs(s.run)
        raise TrainingError(f"loss became {losses['loss'].item()} at step {step}; stopped. Last good "
                            f"checkpoint: {prev[-1] if prev else '(none)'}. Try a lower --lr.")
    acc.backward(losses["loss"])
    # the norm is measured even unclipped: a non-finite gradient would write NaN into every weight
    grad_norm = acc.clip_grad_norm_(s.model.parameters(), cfg.grad_clip or math.inf)
    if not torch.isfinite(torch.as_tensor(grad_norm)):
        prev = checkpoint_dirs(s.run)
        raise TrainingError(f"gradient norm became {float(grad_norm)} at step {step}; stopped before the update. "
                            f"Last good checkpoint: {prev[-1] if prev else '(none)'}. Try a lower --lr.")
    s.optimizer.step()
    _check_weights(s, step)
    s.lr_sched.step()
    s.optimizer.zero_grad(set_to_none=True)
    s.ema.step(acc.unwrap_model(s.model).parameters())
    return losses


def _check_weights(s: Session, step: int) -> None:
    """Stop at the update that made a weight NaN, infinite or larger than any trained weight (WEIGHT_LIMIT):
    the loss would only show it a step later, and the checkpoint due then would keep it."""
    # the largest |weight|, as one device sync; max() keeps a NaN
    peak = torch.stack([torch.linalg.vector_norm(p.detach(), math.inf) for p in s.model.parameters()]).max()
    if peak <= WEIGHT_LIMIT:  # False for NaN too
        return
    bad = unusable_weights(dict(s.acc.unwrap_model(s.model).named_parameters()), WEIGHT_LIMIT)
    prev = checkpoint_dirs(s.run)
    raise TrainingError(f"the weights diverged at step {step} ({bad}); stopped without saving them. Last good "
                        f"checkpoint: {prev[-1] if prev else '(none)'}. Try a lower --lr.")


class _Rate:
    """Steps per second since the previous reading."""

    def __init__(self, step: int) -> None:
        self.t_last, self.step_last = time.time(), step

    def since_last(self, step: int) -> float:
        now = time.time()
        rate = (step - self.step_last) / max(now - self.t_last, 1e-9)
        self.t_last, self.step_last = now, step
        return rate


def _log_metrics(s: Session, step: int, batch: dict[str, Any], losses: dict[str, torch.Tensor], meter: _Rate,
                 bar: tqdm) -> None:
    """A metrics.jsonl row, the progress bar and the studio's status."""
    acc = s.acc
    rate = meter.since_last(step)
    # which data every rank consumed: shows ranks read disjoint positions
    positions = acc.gather(batch["position"].to(acc.device)).view(acc.num_processes, -1).tolist()
    vals = {k: float(v.detach()) for k, v in losses.items()}
    bar.set_postfix(loss=f"{vals['loss']:.4f}", it_s=f"{rate:.2f}")
    if acc.is_main_process:
        with open(s.run / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": step, **vals, "lr": s.lr_sched.get_last_lr()[0],
                                "steps_per_s": rate, "samples_per_s": rate * s.cfg.batch * acc.num_processes,
                                "time": meter.t_last, "positions": positions}) + "\n")
        s.status.update(state="running", step=step, eta_s=(s.cfg.steps - step) / max(rate, 1e-9),
                        loss=vals["loss"])


def _fit_to_time_limit(s: Session, budget: TimeBudget, step: int, bar: tqdm) -> None:
    """At the end of a time limit's probe, shorten the run (and its cosine) to the steps that fit."""
    budget.observe(step)
    fitted = budget.fitted_total(step, s.cfg.steps)
    if s.acc.num_processes > 1 and budget.probe_ends(step):  # ranks ran at slightly different speeds
        fitted = slowest_rank(fitted or s.cfg.steps, s.acc.device)
    if fitted is None or fitted >= s.cfg.steps:
        return
    s.log(f"time limit {s.cfg.time_limit} min: {fitted} steps fit, instead of {s.cfg.steps}")
    s.cfg = replace(s.cfg, steps=fitted)
    bar.total = s.schedule.total = fitted
    s.status.update(total=fitted)
    s.record_config()  # so that --resume continues the fitted schedule


def _save(s: Session, step: int, stopping: bool) -> None:
    """The checkpoint and preview due at `step` (a stop always saves)."""
    acc, cfg = s.acc, s.cfg
    if step % cfg.save_every == 0 or step == cfg.steps or stopping:
        acc.wait_for_everyone()
        if acc.is_main_process:
            save_checkpoint(s.run, step, acc.unwrap_model(s.model), s.ema, s.optimizer, s.lr_sched, cfg.keep)
            s.status.update(last_checkpoint=step)
    if acc.is_main_process and cfg.preview_every and (step % cfg.preview_every == 0 or step == cfg.steps):
        path = s.previews.render(ema_model(acc.unwrap_model(s.model), s.ema), step, cfg.preview_steps)
        s.status.update(last_preview=str(path))
