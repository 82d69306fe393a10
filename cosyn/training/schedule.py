"""How long a run lasts: the learning-rate schedule and the time budget that may shorten it."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch


class CosineWithWarmup:
    """LR factor per step: linear warmup, then cosine to 0 at `total` (diffusers' formula),
    with `total` open to change: a time-limited run shortens it once its speed is known."""

    def __init__(self, warmup: int, total: int) -> None:
        self.warmup = warmup
        self.total = total

    @property
    def total(self) -> int:
        return self._total

    @total.setter
    def total(self, steps: int) -> None:
        self._total = max(steps, self.warmup + 1)  # the cosine needs at least one step after warm-up

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return step / max(1, self.warmup)
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))


class TimeBudget:
    """Fits a run into `minutes`: times the steps of a probe window after start-up, then lowers
    the step count so the cosine schedule ends on time, and says when time is up.

    Checkpoints and previews after the probe are paid from the reserve (10% of the budget, at
    most 30 s); past the deadline the run saves and stops wherever the schedule is.
    """

    def __init__(self, minutes: float, start_step: int, probe: tuple[int, int] = (20, 120),
                 clock: Callable[[], float] = time.time) -> None:
        # the probe starts 20 steps in: the first steps pay for kernel selection and cold caches
        self.clock, self.probe = clock, probe
        self.deadline = clock() + minutes * 60 if minutes else None
        self.reserve_s = min(30.0, minutes * 6)
        self.start_step, self.t_probe = start_step, 0.0

    def observe(self, step: int) -> None:
        """Call once per finished step: starts the probe's clock at its first step."""
        if self.deadline is not None and step - self.start_step == self.probe[0]:
            self.t_probe = self.clock()

    def probe_ends(self, step: int) -> bool:
        """True at the one step where every rank computes its fitted total."""
        return self.deadline is not None and step - self.start_step == self.probe[1]

    def fitted_total(self, step: int, total: int) -> int | None:
        """At the probe's end, the step count that fits the time left, if below `total`; else None."""
        if not self.probe_ends(step):
            return None
        now = self.clock()
        rate = (self.probe[1] - self.probe[0]) / max(now - self.t_probe, 1e-9)
        fitted = step + int(rate * max(self.deadline - now - self.reserve_s, 0))
        return fitted if fitted < total else None

    def expired(self) -> bool:
        """Past the deadline (never without a time limit)."""
        return self.deadline is not None and self.clock() > self.deadline




def slowest_rank(steps: int, device: torch.device) -> int:
    """The smallest of every rank's `steps` (accelerate's reduce only sums or takes the max)."""
    value = torch.tensor(steps, device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MIN)
    return int(value.item())
