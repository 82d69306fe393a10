"""Give an existing checkpoint folder the texture stage: a bank of a dataset's training split (the same
split_by_source as training, so no validation tile is in it) and the stage's settings in config.json.

    python benchmarks/install_texture_stage.py --checkpoint checkpoints/default \
        --data ../shared/data/consep_patched --settings '{"patch": 64, "overlap": 16}'

This is how checkpoints/default got its stage (its base model was trained in stages, not exported from one
run). A run's own checkpoint gets one from `cosyn export-checkpoint`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from cosyn.io.fileio import atomic_dir, atomic_write
from cosyn.model.pipeline import CoSynPipeline
from cosyn.stages.registry import STAGE_DIR
from cosyn.stages.texture import TextureSettings, TextureStage
from cosyn.training.config import TrainConfig
from cosyn.training.texture_bank import run_texture_stage

PROVENANCE = ("CoNSeP (Graham et al., HoVer-Net, Medical Image Analysis 58:101563, 2019), official Train split "
              "as 256x256 patches at 0.25 µm/px: the training side of the project's split by source tile "
              "(val_fraction {val}, seed {seed}; {n} patches; validation sources never included). Research use "
              "with citation; third-party documentation states Apache 2.0.")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--settings", type=json.loads, default={}, help="TextureSettings fields as JSON")
    args = ap.parse_args()
    cfg = TrainConfig(data=args.data)
    with tempfile.TemporaryDirectory() as run:
        built = run_texture_stage(Path(run), cfg)
        built.bank.provenance = PROVENANCE.format(val=cfg.val_fraction, seed=cfg.seed, n=len(built.bank.tiles))
        stage = TextureStage(built.bank, TextureSettings.from_dict(args.settings))
        with atomic_dir(args.checkpoint / STAGE_DIR) as tmp:
            spec = stage.save(tmp)
    config_path = args.checkpoint / "config.json"
    config = json.loads(config_path.read_text())
    config["second_stage"] = spec
    atomic_write(config_path, lambda tmp: Path(tmp).write_text(json.dumps(config, indent=1)))
    config_path.chmod(0o644)
    loaded = CoSynPipeline.from_pretrained(args.checkpoint).second_stage  # it loads, checksum and classes checked
    print(f"{args.checkpoint}: {loaded.name} stage, {len(stage.bank.tiles)} tiles, settings {args.settings}, "
          f"bank sha256 {loaded.sha256[:12]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
