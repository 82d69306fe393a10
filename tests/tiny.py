"""Tiny model configs shared by the tests: seconds on 2 CPU cores."""

from __future__ import annotations

from functools import lru_cache

from cosyn.core.classes import CONSEP
from cosyn.model.checkpoint import PipelineConfig
from cosyn.model.denoiser import DenoiserConfig, JointDenoiser
from cosyn.model.pipeline import CoSynPipeline
from cosyn.model.text import TextEncoder

TINY_DENOISER = {"block_out_channels": [16, 32], "attention_levels": [False, True], "norm_num_groups": 8,
                 "attention_head_dim": 4, "point_encoder_blocks": 1}


@lru_cache(maxsize=1)
def text_encoder() -> TextEncoder:
    """One MiniLM for the whole session: it takes seconds to load."""
    return TextEncoder()


def tiny_pipeline(seed: int = 0, classes: list[str] | None = None, mpp: float = 0.5) -> CoSynPipeline:
    """A random-weight pipeline at `mpp` µm/px; a finer layout goes through the default second stage."""
    import torch

    torch.manual_seed(seed)
    names = classes or CONSEP.to_list()
    cfg = PipelineConfig(DenoiserConfig(num_classes=len(names), **TINY_DENOISER), names, mpp=mpp)
    return CoSynPipeline(JointDenoiser(cfg.denoiser), cfg, text_encoder())
