"""Second stages: what brings a base triple at the base model's µm/px to a finer one (docs/architecture.md).

The pipeline knows only the `SecondStage` protocol; a checkpoint's config.json names its stage
(`"second_stage": {"name": "upsampler"}`, the default), and `registry.load_stage` loads it by that name.
"""

from cosyn.stages.base import SecondStage, StageContext, StageError
from cosyn.stages.registry import STAGES, load_stage

__all__ = ["STAGES", "SecondStage", "StageContext", "StageError", "load_stage"]
