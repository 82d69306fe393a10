"""SamplingSettings: what one call of CoSynPipeline.sample is asked to do, checked in one place.

The pipeline, the CLI (`sample`, `augment`), the studio page, its API and evaluation all build this
one type, so a value is refused with the same message wherever it comes from. The type holds
what the pipeline itself can run (steps 1..1000, 1..64 triples); a front end that bounds what one
request may cost (the studio) applies its tighter caps on top with `check_limits`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any

from cosyn.model.diffusion.gaussian import SAMPLERS

MAX_STEPS, MAX_N = 1000, 64  # what the pipeline accepts in one call
SEED_RANGE = (-(2**63), 2**63)  # torch.Generator.manual_seed takes a 64-bit integer


def _integer(name: str, value: Any) -> int:
    # 25.0 from a web form is 25; 2.5, "25", True or nan are refused rather than truncated or guessed
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}={value!r} must be an integer")
    if isinstance(value, numbers.Integral):
        return int(value)
    if not math.isfinite(value) or not float(value).is_integer():
        raise ValueError(f"{name}={value!r} must be an integer")
    return int(value)


def _finite(name: str, value: Any) -> float:
    # a NaN guidance would silently turn every pixel into NaN, written out as a black image
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r} must be a finite number")
    return float(value)


def _within(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name}={value} must lie in {low}..{high}")


@dataclass(frozen=True)
class SamplingSettings:
    """- steps: denoising steps, 1..1000
    - guidance: classifier-free guidance scale (1 = no guidance), any finite number
    - sampler: one of gaussian.SAMPLERS (ddim, dpm++, unipc)
    - seed: the noise seed, a 64-bit integer
    - n: triples per call, 1..64
    - refine: run the checkpoint's second stage (cosyn.stages; by default the Upsampler) when the layout
      is finer than the base model, so the triples come at the layout's µm/px (CoSynPipeline.stage_runs);
      off, they stay at the model's

    Values are normalised on construction (an integral float becomes an int), so what is recorded
    in a triple's params is what was sampled.
    """

    steps: int = 25
    guidance: float = 2.0
    sampler: str = "dpm++"
    seed: int = 0
    n: int = 1
    refine: bool = True

    def __post_init__(self) -> None:
        fixed = {"steps": _integer("steps", self.steps), "guidance": _finite("guidance", self.guidance),
                 "seed": _integer("seed", self.seed), "n": _integer("n", self.n)}
        _within("steps", fixed["steps"], 1, MAX_STEPS)
        _within("n", fixed["n"], 1, MAX_N)
        if not SEED_RANGE[0] <= fixed["seed"] < SEED_RANGE[1]:
            raise ValueError(f"seed={fixed['seed']} must be a 64-bit integer")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {sorted(SAMPLERS)}")
        if not isinstance(self.refine, bool):
            raise ValueError(f"refine={self.refine!r} must be true or false")
        for name, value in fixed.items():  # frozen: the dataclass way to normalise in __post_init__
            object.__setattr__(self, name, value)

    def with_(self, **changes: Any) -> SamplingSettings:
        """A copy with `changes` applied, validated like a new one (unknown names are a TypeError)."""
        return SamplingSettings(**{**asdict(self), **changes})

    def check_limits(self, max_steps: int, max_n: int, who: str = "this service") -> None:
        """Refuse more steps or triples than a front end allows per request (tighter than the pipeline's)."""
        if self.steps > max_steps:
            raise ValueError(f"steps={self.steps}: {who} samples with 1 to {max_steps} steps")
        if self.n > max_n:
            raise ValueError(f"n={self.n}: {who} samples 1 to {max_n} triples per request")

    def pixel_steps(self, width: int, height: int) -> int:
        """The work of one call on a width × height canvas: what its run time is proportional to."""
        return self.n * self.steps * width * height
