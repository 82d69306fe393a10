"""The texture stage a run's checkpoint ships with: a bank of the run's own training split at its native
µm/px, so a model fine-tuned on a user's data takes its texture from that data.

`export-checkpoint` (and so the studio's Train tab, which exports when a run ends) builds it into
RUN/second_stage/ the first time and reuses it after; the validation tiles never enter it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from cosyn.data.dataset import resample_sample, split_by_source
from cosyn.data.formats import read_dataset
from cosyn.data.sample import DataError
from cosyn.stages.registry import STAGE_DIR
from cosyn.stages.texture import BANK_NAME, TextureStage, bank_from_samples, load_bank, save_bank
from cosyn.training.config import TrainConfig


def provenance_of(cfg: TrainConfig, tiles: int, sources: list[str]) -> str:
    return (f"{tiles} training-split tiles of {cfg.data} (format {cfg.format}; validation split by source tile, "
            f"val_fraction {cfg.val_fraction}, seed {cfg.seed}); sources: {', '.join(sources)}. The data's "
            "licence governs this bank: see the model card.")


def run_texture_stage(run: Path, cfg: TrainConfig, log: Callable[[str], None] = print) -> TextureStage:
    """RUN/second_stage/texture_bank.safetensors, built from `cfg`'s data on first use, as a texture stage."""
    path = Path(run) / STAGE_DIR / BANK_NAME
    if not path.is_file():
        seq = read_dataset(cfg.data, cfg.format)
        samples = []
        for i in tqdm(range(len(seq)), desc="texture bank: reading", leave=False):
            try:
                samples.append(seq[i])
            except DataError as e:
                log(f"texture bank: skipped unreadable sample: {e}")
        train_idx, _ = split_by_source(samples, cfg.val_fraction, cfg.seed)
        tiles = [samples[i] for i in train_idx]
        finest = min((s.mpp for s in tiles if s.mpp is not None), default=None)
        if finest is not None:
            tiles = [resample_sample(s, finest) if s.mpp != finest else s for s in tiles]
        bank = bank_from_samples(tiles, list(tiles[0].classes.names), "")
        bank.provenance = provenance_of(cfg, len(bank.tiles), bank.sources())
        path.parent.mkdir(parents=True, exist_ok=True)
        save_bank(bank, path)
        log(f"texture bank: {len(bank.tiles)} of {len(tiles)} training tiles, {path.stat().st_size / 2**20:.1f} MB "
            f"→ {path}")
    return TextureStage(load_bank(path), bank_path=path)
