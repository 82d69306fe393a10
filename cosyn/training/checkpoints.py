"""Checkpoints of a run (atomic, the last `keep` kept), resuming from them, and exporting the
latest EMA weights as a loadable pipeline folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from diffusers.training_utils import EMAModel
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from cosyn.io.fileio import atomic_dir, atomic_write
from cosyn.io.guards import refuse_overlap
from cosyn.io.state_io import load_state, save_state
from cosyn.model.checkpoint import PipelineConfig, unusable_weights
from cosyn.model.denoiser import JointDenoiser
from cosyn.model.pipeline import CoSynPipeline
from cosyn.training.config import TrainConfig, TrainingError

# float16's largest value (the default export dtype). No trained weight comes near it: one past it has diverged
# (lr=1e30 once saved weights of 3e27 as the "last good checkpoint", exported as all-inf float16).
WEIGHT_LIMIT = float(torch.finfo(torch.float16).max)


def checkpoint_dirs(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob("step_*"))


def save_checkpoint(run: Path, step: int, model: nn.Module, ema: EMAModel, optimizer: torch.optim.Optimizer,
                    lr_sched: LRScheduler, keep: int) -> Path:
    """Everything needed to continue exactly, written to a temp folder and renamed into place,
    so a crash or a full disk never leaves a half checkpoint as the latest one. Weights (the model's or the
    EMA's) that hold NaN, infinity or values past WEIGHT_LIMIT are never written: the run stops, and the
    latest checkpoint stays the last good one."""
    bad = diverged_weights(model, ema)
    if bad:
        prev = checkpoint_dirs(run)
        raise TrainingError(f"the weights diverged by step {step} ({bad}); stopped without saving them. Last good "
                            f"checkpoint: {prev[-1] if prev else '(none)'}. Try a lower --lr.")
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


def diverged_weights(model: nn.Module, ema: EMAModel) -> str | None:
    """What makes the model's or the EMA's weights unfit to keep (see save_checkpoint); None when they are fit."""
    names = [name for name, _ in model.named_parameters()]
    return unusable_weights({**{f"model {k}": v for k, v in model.state_dict().items()},
                             **{f"EMA {n}": p for n, p in zip(names, ema.shadow_params, strict=True)}}, WEIGHT_LIMIT)


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
    atomic_write(path, lambda tmp: Path(tmp).write_text("".join(line + "\n" for line in keep)))


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


def export_checkpoint(run: str | Path, out: str | Path, dtype: torch.dtype = torch.float16,
                      overwrite: bool = False, second_stage: str = "texture") -> Path:
    """The design's loadable folder from the run's latest EMA weights, with a model card and its second
    stage: "texture" (a bank of the run's own training split, built into RUN/second_stage/ on first export;
    cosyn.training.texture_bank) or "upsampler" (no files, no data needed).

    An existing `out` (its weights, card and evaluation) is replaced whole, only with `overwrite`."""
    from cosyn.training.model_card import model_card_text

    run, out = Path(run), Path(out)
    refuse_overlap(run, out, "--out")  # --overwrite of the run itself, or of a folder holding it, would delete it
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
    bad = unusable_weights(model.state_dict(), torch.finfo(dtype).max)
    if bad:  # as float16, 3e27 would be written as inf: a checkpoint that samples black
        raise TrainingError(f"{run}: the EMA weights of {ckpts[-1]} cannot be exported as "
                            f"{str(dtype).removeprefix('torch.')} ({bad}): the run diverged; train it again with a "
                            "lower --lr")
    step = json.loads((ckpts[-1] / "trainer.json").read_text())["step"]
    card = model_card_text(out, run, step, meta)
    pipe = CoSynPipeline(model, pcfg)
    if second_stage == "texture":
        from cosyn.training.texture_bank import run_texture_stage

        try:
            pipe.second_stage = run_texture_stage(run, TrainConfig.from_dict(meta["train"]))
        except (OSError, ValueError) as e:
            raise TrainingError(f"{run}: the texture stage's bank cannot be built from the run's data ({e}); "
                                "export with --second-stage upsampler to ship without one") from None
    elif second_stage != "upsampler":
        raise TrainingError(f"second stage {second_stage!r}: choose texture or upsampler")
    pipe.save_pretrained(out, dtype=dtype, extras=lambda tmp: (tmp / "MODEL_CARD.md").write_text(card))
    return out
