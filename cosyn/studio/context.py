"""What every tab of one studio shares: settings, loaded models, the training job, cancel flags."""

from __future__ import annotations

from dataclasses import dataclass

from cosyn.studio.config import StudioConfig
from cosyn.studio.jobs import JobManager
from cosyn.studio.models import ModelInfo, PipelineCache, list_models
from cosyn.studio.sampling import CancelRegistry, SpeedModel

SAMPLING_GROUP = "sampling"  # the page's Generate and the API share it: one sampling at a time on the CPU


@dataclass
class StudioContext:
    config: StudioConfig
    models: PipelineCache
    jobs: JobManager
    cancels: CancelRegistry
    speed: SpeedModel

    @classmethod
    def create(cls, config: StudioConfig) -> StudioContext:
        models = PipelineCache(config.checkpoints, trust_unverified=config.trust_unverified)
        return cls(config, models, JobManager(config.runs, config.checkpoints), CancelRegistry(), SpeedModel())

    def model_list(self) -> list[ModelInfo]:
        return list_models(self.config.checkpoints, self.config.default_checkpoint)

    def model_names(self) -> list[str]:
        return [m.name for m in self.model_list()]
