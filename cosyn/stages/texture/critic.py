"""The texture stage's critic: small classifiers (cosyn.stages.classifier) trained to tell the checkpoint's own
training tiles from what its pipeline makes of their layouts. With a critic the stage composes a few draws of
each triple and keeps the one the critic finds most real (discriminator rejection sampling, Azadi et al.
2019): which slide, which patches and which nuclei a draw takes decide most of how real it looks, and one
draw in a few is much better than the average (docs/model.md, "Second stage").

It sees only training tiles, never the validation tiles the realism judge scores, and it is stored beside the
bank in safetensors (nothing unpickles), with its checksum.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from cosyn.io.fileio import atomic_write
from cosyn.stages.base import StageError
from cosyn.stages.classifier import TextureClassifier, as_acquired, crops, fit_classifier, images_tensor

CRITIC_NAME = "critic.safetensors"
CROP = 64  # px at the bank's µm/px: 16 µm at 0.25, the scale at which quilt patches and seams show
WIDTH = 16


@dataclass
class Critic:
    models: list[TextureClassifier]

    def score(self, image: np.ndarray) -> float:
        """How generated `image` (RGB uint8 at the bank's µm/px) looks: the models' mean logit over its CROP²
        crops after the data's JPEG round trip. Lower is more real."""
        tiles = crops(as_acquired(image), CROP)
        if not tiles:
            raise ValueError(f"the critic needs an image of at least {CROP}² px, got {image.shape[:2]}")
        x = images_tensor(tiles)
        with torch.no_grad():
            return float(np.mean([m(x).mean().item() for m in self.models]))


def train_critic(real: Sequence[np.ndarray], generated: Sequence[np.ndarray], *, models: int = 3, steps: int = 600,
                 progress: Callable[[int], None] | None = None) -> Critic:
    """A critic of `models` classifiers (one per seed) fitted on real tiles (label 0) against generated ones
    (label 1, given as generated: the JPEG round trip that real tiles went through is applied here)."""
    if not real or not generated:
        raise ValueError("a critic needs real and generated tiles")
    if min(min(im.shape[:2]) for im in [*real, *generated]) < CROP:
        raise ValueError(f"a critic needs tiles of at least {CROP}² px")
    sizes = {im.shape[:2] for im in [*real, *generated]}
    if len(sizes) > 1:
        raise ValueError(f"a critic's tiles must share one size, not {sorted(sizes)}")
    x = images_tensor([*real, *(as_acquired(im) for im in generated)])
    y = torch.cat([torch.zeros(len(real)), torch.ones(len(generated))])
    fitted = []
    for seed in range(models):
        fitted.append(fit_classifier(x, y, crop=CROP, steps=steps, batch=32, lr=2e-3, width=WIDTH, seed=seed))
        if progress:
            progress(seed + 1)
    return Critic(fitted)


def save_critic(critic: Critic, path: Path, provenance: str) -> None:
    tensors = {f"{k}.{name}": t.detach().contiguous() for k, m in enumerate(critic.models)
               for name, t in m.state_dict().items()}
    meta = {"models": str(len(critic.models)), "width": str(WIDTH), "crop": str(CROP), "provenance": provenance}

    def write(tmp: str) -> None:
        save_file(tensors, tmp, metadata=meta)
        Path(tmp).chmod(0o644)  # a temp file is owner-only; whoever loads the checkpoint must read its critic

    atomic_write(Path(path), write)


def load_critic(path: Path) -> Critic:
    """The critic in `path`; a StageError names the file and the problem."""
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
        count, width = int(meta["models"]), int(meta["width"])
    except (OSError, SafetensorError, KeyError, ValueError, json.JSONDecodeError) as e:
        raise StageError(f"{path}: not a readable critic ({e})") from None
    if int(meta.get("crop", CROP)) != CROP or not 1 <= count <= 16:
        raise StageError(f"{path}: a critic of {count} models on {meta.get('crop')} px crops; this version reads "
                         f"1..16 models on {CROP} px crops")
    models = []
    for k in range(count):
        state = {name.split(".", 1)[1]: t for name, t in tensors.items() if name.startswith(f"{k}.")}
        bad = [name for name, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()]
        if bad:
            raise StageError(f"{path}: model {k}'s {bad[0]} holds NaN or infinite values")
        model = TextureClassifier(width)
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise StageError(f"{path}: model {k} does not fit the critic's network ({e})") from None
        models.append(model.eval())
    return Critic(models)
