"""`cosyn train-critic`: a checkpoint's texture-stage critic, from its own training data.

The critic (cosyn.stages.texture.critic) learns what tells the checkpoint's outputs from real tissue: it is
fitted on the training split's real tiles against what the checkpoint makes of the same tiles' layouts (base
model, then one draw of the texture stage). The validation split never enters it, so the realism judge,
which scores against validation tiles, stays a fair yardstick. The critic is written beside the bank, its
checksum recorded, and only then does config.json ask the stage for several draws: a kill in between leaves
a checkpoint that loads and samples as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cosyn.data.dataset import resample_sample, split_by_source
from cosyn.data.formats import read_dataset
from cosyn.data.targets import layout_from_sample
from cosyn.io.fileio import atomic_write, record_checksum
from cosyn.model.checkpoint import CONFIG_NAME, CheckpointError
from cosyn.model.pipeline import CoSynPipeline
from cosyn.stages.registry import STAGE_DIR
from cosyn.stages.texture import TextureStage
from cosyn.stages.texture.critic import CRITIC_NAME, save_critic, train_critic
from cosyn.stages.texture.stage import MAX_DRAWS
from cosyn.training.config import TrainConfig


def train_texture_critic(checkpoint: str | Path, data: str | Path, *, fmt: str = "auto", tiles: int = 96,
                         sampling_steps: int = 25, critic_steps: int = 600, models: int = 3, draws: int = 4,
                         trust_unverified: bool = False, log: Callable[[str], None] = print) -> Path:
    """Fit the critic of the texture-stage checkpoint in `checkpoint` on `data`'s training split (split by
    source tile as training splits it), from `tiles` of its layouts, and set the stage to keep the best of
    `draws`. Returns the critic's path."""
    if not 2 <= draws <= MAX_DRAWS or tiles < 2 or sampling_steps < 1 or critic_steps < 1 or not 1 <= models <= 16:
        raise ValueError(f"draws must lie in 2..{MAX_DRAWS}, tiles be at least 2, steps at least 1 and models "
                         "in 1..16")
    folder = Path(checkpoint)
    pipe = CoSynPipeline.from_pretrained(folder, trust_unverified=trust_unverified)
    stage = pipe.second_stage
    if not isinstance(stage, TextureStage):
        raise CheckpointError(f"{folder}: its second stage is {stage.name!r}; a critic chooses among texture-stage "
                              "draws (export the run with --second-stage texture)")
    seq = read_dataset(data, fmt)
    samples = [seq[i] for i in range(len(seq))]
    train_idx, _ = split_by_source(samples, TrainConfig.val_fraction, TrainConfig.seed)
    real = [resample_sample(samples[i], stage.native_mpp) for i in train_idx]
    single = TextureStage(stage.bank, replace(stage.settings, draws=1))  # what the critic must learn to see
    chosen = np.unique(np.linspace(0, len(real) - 1, min(tiles, len(real))).round().astype(int))
    generated = []
    for k in tqdm(chosen, desc="critic: sampling training layouts", unit="tile"):
        layout = layout_from_sample(real[k])
        base = pipe.sample(layout, steps=sampling_steps, seed=int(k), refine=False)[0]
        generated.append(single.to_mpp(base, stage.native_mpp, seed=int(k)).image)
    h = min(im.shape[0] for im in [*generated, *(s.image for s in real)])
    w = min(im.shape[1] for im in [*generated, *(s.image for s in real)])
    bar = tqdm(total=models, desc="critic: fitting", unit="model")
    critic = train_critic([s.image[:h, :w] for s in real], [im[:h, :w] for im in generated], models=models,
                          steps=critic_steps, progress=lambda done: bar.update(done - bar.n))
    bar.close()
    path = folder / STAGE_DIR / CRITIC_NAME
    save_critic(critic, path, f"{len(real)} real training-split tiles of {data} against {len(generated)} of "
                              f"{folder.name}'s outputs for their layouts")
    record_checksum(path)
    config = json.loads((folder / CONFIG_NAME).read_text())
    config["second_stage"].setdefault("settings", {})["draws"] = draws
    text = json.dumps(config, indent=1)

    def write(tmp: str) -> None:
        Path(tmp).write_text(text)
        Path(tmp).chmod(0o644)

    atomic_write(folder / CONFIG_NAME, write)
    log(f"critic of {models} models on {len(real)} real and {len(generated)} generated tiles → {path}; "
        f"the texture stage now keeps the best of {draws} draws")
    return path
