"""A checkpoint folder: its config (`PipelineConfig`, every number range-checked before anything is built),
its verified weights and its second stage. `CoSynPipeline.from_pretrained` reads a folder through here; a
folder that cannot be used is a `CheckpointError` naming the file and the problem.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from cosyn import __version__
from cosyn.core.classes import ClassSet
from cosyn.io.fileio import CHECKSUMS_NAME, ChecksumError, record_checksum, verified_sha256
from cosyn.model.denoiser import DenoiserConfig, JointDenoiser
from cosyn.model.diffusion.gaussian import DEFAULT_SCHEDULE, check_schedule
from cosyn.model.ranges import Bounds, range_problems, shown
from cosyn.model.text import DEFAULT_TEXT_ENCODER
from cosyn.stages.base import SecondStage, StageContext, StageError
from cosyn.stages.registry import STAGE_DIR, load_stage

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# where the learned refiner (removed; see git history) kept its weights: a checkpoint holding it is refused
REFINER_DIR = "refiner"
FORMAT_VERSION = 1
# A checkpoint's own numbers (inclusive), checked with the denoiser's (denoiser.DENOISER_RANGES) and the noise
# schedule's (gaussian.SCHEDULE_RANGES) before any module is built.
PIPELINE_RANGES: dict[str, Bounds] = {"mpp": (0.01, 10.0), "train_crop": (8, 2048), "max_canvas": (8, 8192)}


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded; the message names the file and the problem."""



@dataclass
class PipelineConfig:
    denoiser: DenoiserConfig
    classes: list[str]
    mpp: float = 0.5
    tissues: tuple[str, ...] = ("colon",)
    train_crop: int = 64
    text_encoder: str = DEFAULT_TEXT_ENCODER
    schedule: dict[str, Any] | None = None
    max_canvas: int = 1024
    second_stage: dict[str, Any] | None = None  # the stage's spec (cosyn.stages); None: the default
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self.schedule = dict(DEFAULT_SCHEDULE if self.schedule is None else self.schedule)
        if not isinstance(self.denoiser, DenoiserConfig):
            raise ValueError(f"denoiser must be a denoiser config, got {type(self.denoiser).__name__}")
        bad = [f"{k}={shown(getattr(self, k))} must be a whole number" for k in ("train_crop", "max_canvas")
               if isinstance(getattr(self, k), bool) or not isinstance(getattr(self, k), int)]
        if isinstance(self.mpp, bool) or not isinstance(self.mpp, (int, float)):
            bad.append(f"mpp={shown(self.mpp)} must be a number of microns per pixel")
        if bad:
            raise ValueError("; ".join(bad))
        bad = range_problems({k: getattr(self, k) for k in PIPELINE_RANGES}, PIPELINE_RANGES)
        if bad:
            raise ValueError("; ".join(bad))
        check_schedule(self.schedule)
        if not isinstance(self.classes, list) or not all(isinstance(c, str) for c in self.classes):
            raise ValueError(f"classes must be a list of names, got {shown(self.classes)}")
        if not all(isinstance(t, str) for t in self.tissues) or not isinstance(self.text_encoder, str):
            raise ValueError("tissues must be a list of names and text_encoder a name")
        ClassSet(tuple(self.classes))
        if len(self.classes) != self.denoiser.num_classes:
            raise ValueError(
                f"class list has {len(self.classes)} entries but the denoiser has {self.denoiser.num_classes} classes"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.version,
            "cosyn_version": __version__,
            "denoiser": self.denoiser.to_dict(),
            "classes": list(self.classes),
            "mpp": self.mpp,
            "tissues": list(self.tissues),
            "train_crop": self.train_crop,
            "text_encoder": self.text_encoder,
            "schedule": self.schedule,
            "max_canvas": self.max_canvas,
            **({} if self.second_stage is None else {"second_stage": self.second_stage}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PipelineConfig:
        if not isinstance(d, dict):
            raise ValueError(f"expected a JSON object, got {type(d).__name__}")
        d = dict(d)
        version = d.pop("format_version", None)
        d.pop("cosyn_version", None)
        if version != FORMAT_VERSION:
            raise ValueError(f"format_version {version!r} is not supported (expected {FORMAT_VERSION})")
        d["denoiser"] = DenoiserConfig.from_dict(d["denoiser"])
        d["tissues"] = tuple(d.get("tissues", ()))
        return cls(**d)


def record_checksums(folder: str | Path) -> dict[Path, str]:
    """Record in checksums.json the sha256 of each weight file of the checkpoint in `folder` that has none yet
    (its model and its second stage's files), so that it loads without --trust-unverified; a file whose
    recorded sum no longer matches is refused, not re-recorded. Each file with what was done to it."""
    folder = Path(folder)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing; a checkpoint folder holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    done = {}
    for path in [weights, *sorted((folder / STAGE_DIR).glob("*.safetensors"))]:
        try:
            verified_sha256(path, trust_unverified=True)  # refuses a recorded sum that differs
            book = path.parent / CHECKSUMS_NAME
            recorded = book.is_file() and path.name in json.loads(book.read_text())
        except ChecksumError as e:
            raise CheckpointError(str(e)) from None
        done[path] = "already recorded, and matches" if recorded else f"recorded sha256 {record_checksum(path)}"
    return done


def read_pipeline_config(folder: str | Path) -> PipelineConfig:
    """A checkpoint folder's config, without touching its weights."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; a checkpoint folder holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        raw = json.loads(path.read_text())
    except ValueError as e:  # not JSON, not UTF-8, or an integer of over 4,300 digits
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: JSON nested too deeply") from None
    except OSError as e:
        raise CheckpointError(f"{path}: unreadable ({e})") from None
    try:
        return PipelineConfig.from_dict(raw)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid config ({e})") from None


def unusable_weights(state: dict[str, torch.Tensor], limit: float = math.inf) -> str | None:
    """What is wrong with weights holding NaN or infinity, or (with `limit`) a value beyond ±limit, naming the
    first such tensor; None when all are usable. A model that diverged in training samples black images, which
    nothing downstream would notice, so every reader and writer of weights asks this."""
    for name, tensor in state.items():
        if not tensor.is_floating_point():
            continue
        bad = ~torch.isfinite(tensor)
        if limit < math.inf:
            bad |= tensor.abs() > limit
        if bad.any():
            worst = tensor.detach().float().abs().nan_to_num(nan=math.inf, posinf=math.inf).max().item()
            beyond = "" if limit == math.inf else f" or beyond ±{limit:g}"
            return (f"{int(bad.sum())} of {tensor.numel()} values of {name} are NaN or infinite{beyond} "
                    f"(largest |value| {worst:g})")
    return None


def load_second_stage(folder: Path, config: PipelineConfig, trust_unverified: bool) -> SecondStage:
    """The second stage the checkpoint's config.json names (cosyn.stages), with its files."""
    if (folder / REFINER_DIR).exists():
        raise CheckpointError(f"{folder / REFINER_DIR}: this checkpoint holds a learned refiner, which CoSyn no longer "
                              "runs (the Upsampler measured better); remove the folder to use the base model")
    try:
        return load_stage(folder, config.second_stage, stage_context(config, trust_unverified))
    except StageError as e:
        raise CheckpointError(str(e)) from None


def stage_context(config: PipelineConfig, trust_unverified: bool = False) -> StageContext:
    return StageContext(list(config.classes), config.mpp, config.denoiser.num_classes, trust_unverified)


def read_weights(folder: Path, config: PipelineConfig, trust_unverified: bool) -> tuple[dict[str, torch.Tensor], str]:
    """The checkpoint's weights and their sha256: checked against checksums.json (a folder without a recorded
    checksum only with `trust_unverified`), against the shapes `config` gives them, and for NaN or infinity."""
    cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not w_path.is_file():
        raise CheckpointError(f"{w_path}: missing; a checkpoint folder holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        sha256 = verified_sha256(w_path, trust_unverified)
    except ChecksumError as e:
        raise CheckpointError(str(e)) from None
    try:
        state = load_file(w_path, device="cpu")  # safetensors: no unpickling, ever
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{w_path}: unreadable safetensors file ({e})") from None
    with torch.device("meta"):  # the shapes config.json describes, without allocating a byte for them
        expected = {k: v.shape for k, v in JointDenoiser(config.denoiser).state_dict().items()}
    differ = [k for k in expected if k in state and state[k].shape != expected[k]]
    if differ:  # other widths, depths or class count than config.json describes: name the first tensors
        shapes = ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(expected[k])}" for k in differ[:2])
        raise CheckpointError(f"{w_path}: {len(differ)} tensors do not have the shapes {cfg_path.name} "
                              f"gives them ({shapes}; {len(config.classes)} classes in the config)")
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{w_path}: weights do not match {cfg_path.name} "
            f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    bad = unusable_weights(state)
    if bad:
        raise CheckpointError(f"{w_path}: {bad}: the weights diverged in training or were damaged; use an "
                              "earlier checkpoint")
    return state, sha256
