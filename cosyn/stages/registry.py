"""Second stages by name. Adding one is one line in `STAGES`: the pipeline never changes.

Each entry is a "module:function" loader, imported only when a checkpoint names it, with the signature
`load(stage_folder: Path, spec: dict, context: StageContext) -> SecondStage`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from cosyn.stages.base import SecondStage, StageContext, StageError

STAGES: dict[str, str] = {
    "upsampler": "cosyn.stages.upsampler:load",
    "texture": "cosyn.stages.texture:load",
}
DEFAULT_STAGE = "upsampler"  # a checkpoint whose config.json names none
STAGE_DIR = "second_stage"  # a stage's own files, inside the checkpoint folder
CONFIG_NAME = "config.json"


def load_stage(checkpoint_folder: Path, config_spec: dict[str, Any] | None, context: StageContext) -> SecondStage:
    """The stage `config_spec` (config.json's "second_stage"; None: the default) names, loaded with its files
    from `checkpoint_folder/second_stage/`."""
    where = Path(checkpoint_folder) / CONFIG_NAME
    spec = {"name": DEFAULT_STAGE} if config_spec is None else config_spec
    name = spec.get("name") if isinstance(spec, dict) else None
    if name not in STAGES:
        raise StageError(f"{where}: second_stage {spec!r:.80} names no known stage; known: {sorted(STAGES)}")
    module_name, function = STAGES[name].split(":")
    try:
        loader = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as e:
        raise StageError(f"{where}: second_stage {name!r} cannot be loaded ({e})") from None
    return loader(Path(checkpoint_folder) / STAGE_DIR, spec, context)


def default_stage(context: StageContext) -> SecondStage:
    """The stage of a pipeline built in memory, without a checkpoint folder: the default needs no files."""
    return load_stage(Path(STAGE_DIR), None, context)
