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
from cosyn.model.ranges import Bounds, range_problems, shown

MAX_STEPS, MAX_N = 1000, 64  # what the pipeline accepts in one call
# Every number's sane range (inclusive), checked in one place. Guidance past 20 only amplifies the model's
# errors (1e30 made an all-NaN distance map and a black image); the seed is a 64-bit integer because
# torch.Generator.manual_seed takes one.
SETTINGS_RANGES: dict[str, Bounds] = {"steps": (1, MAX_STEPS), "guidance": (0.0, 20.0), "seed": (-(2**63), 2**63 - 1),
                                      "n": (1, MAX_N)}
SETTINGS_REASONS = {"guidance": "1 is unguided, about 2 is usual; beyond 20 it only amplifies the model's errors",
                    "seed": "a signed 64-bit integer"}


def _integer(name: str, value: Any) -> int:
    # 25.0 from a web form is 25; 2.5, "25", True or nan are refused rather than truncated or guessed
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}={shown(value)} must be an integer")
    if isinstance(value, numbers.Integral):
        return int(value)
    if not math.isfinite(value) or not float(value).is_integer():
        raise ValueError(f"{name}={shown(value)} must be an integer")
    return int(value)


def _finite(name: str, value: Any) -> float:
    # a NaN guidance would silently turn every pixel into NaN, written out as a black image
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}={shown(value)} must be a finite number")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float range (10**400 from JSON)
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{name}={shown(value)} must be a finite number")
    return number


@dataclass(frozen=True)
class SamplingSettings:
    """- steps: denoising steps, 1..1000
    - guidance: classifier-free guidance scale (1 = no guidance, 0 = unconditional), 0..20
    - sampler: one of gaussian.SAMPLERS (ddim, dpm++, unipc)
    - seed: the noise seed, a signed 64-bit integer
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
        bad = range_problems(fixed, SETTINGS_RANGES, SETTINGS_REASONS)
        if bad:
            raise ValueError("; ".join(bad))
        if not isinstance(self.sampler, str) or self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {shown(self.sampler)}; choose one of {sorted(SAMPLERS)}")
        if not isinstance(self.refine, bool):
            raise ValueError(f"refine={shown(self.refine)} must be true or false")
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
