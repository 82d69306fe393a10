"""Tiny model configs shared by the tests: seconds on 2 CPU cores."""

from __future__ import annotations

from functools import lru_cache

from cosyn.core.classes import CONSEP
from cosyn.model.denoiser import DenoiserConfig, JointDenoiser
from cosyn.model.pipeline import CoSynPipeline, PipelineConfig
from cosyn.model.text import TextEncoder

TINY_DENOISER = {"block_out_channels": [16, 32], "attention_levels": [False, True], "norm_num_groups": 8,
                 "attention_head_dim": 4, "point_encoder_blocks": 1}


@lru_cache(maxsize=1)
def text_encoder() -> TextEncoder:
    """One MiniLM for the whole session: it takes seconds to load."""
    return TextEncoder()


def tiny_pipeline(seed: int = 0, classes: list[str] | None = None) -> CoSynPipeline:
    import torch

    torch.manual_seed(seed)
    names = classes or CONSEP.to_list()
    cfg = PipelineConfig(DenoiserConfig(num_classes=len(names), **TINY_DENOISER), names, mpp=0.5)
    return CoSynPipeline(JointDenoiser(cfg.denoiser), cfg, text_encoder())


TINY_REFINER = {"widths": (8, 16), "blocks": 1}


def tiny_pipeline_with_refiner(seed: int = 0, mpp: float = 0.5) -> CoSynPipeline:
    """`tiny_pipeline()` at `mpp` with a random-weight refiner stage (mpp → mpp / 2); its weights are moved
    off the untrained identity so that a refined image differs from an upsampled base one."""
    import torch

    from cosyn.refiner.network import RefinerConfig, RefinerNet
    from cosyn.refiner.stage import Refiner

    pipe = tiny_pipeline(seed)
    pipe.config.mpp = mpp
    torch.manual_seed(seed)
    net = RefinerNet(RefinerConfig(**TINY_REFINER))
    for p in net.parameters():
        p.data.normal_(0, 0.05)
    pipe.refiner = Refiner(net, list(pipe.config.classes), pipe.config.mpp)
    return pipe
