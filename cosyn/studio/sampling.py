"""Sampling for the studio: the pipeline in a worker thread, previews through a queue, cancel.

Gradio streams a generator's yields to the browser, but the pipeline reports progress through
a callback. The worker thread runs `pipe.sample` and puts each preview on a queue; the
generator here hands them out (latest first, older ones dropped when the browser lags) and
ends with the triples. A threading.Event checked in the callback stops the worker between
steps, whoever sets it: the Cancel button, or the generator closing because the tab went away.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from cosyn.core.layout import Layout
from cosyn.core.triple import Triple
from cosyn.model.diffusion.gaussian import SAMPLERS
from cosyn.model.pipeline import CoSynPipeline, StepPreview

MAX_STEPS, MAX_N = 100, 8  # per run, on the page and through the API: bounds what one request costs
# ...and so does their product with the canvas: a request holds the only sampling slot. 8 triples of 50 steps
# on a 256² model canvas, or one 1024² triple of 25 steps; about 3 minutes on a 2-core CPU (6.9 µs per
# pixel-step: 2.8 s for 25 steps on 128², `benchmarks/sample_latency.py`).
MAX_PIXEL_STEPS = 8 * 50 * 256 * 256


@dataclass
class SampleSettings:
    steps: int = 25
    guidance: float = 2.0
    sampler: str = "dpm++"
    seed: int = 0
    n: int = 1

    def __post_init__(self) -> None:
        self.steps, self.seed, self.n = int(self.steps), int(self.seed), int(self.n)
        self.guidance = float(self.guidance)
        if not 1 <= self.steps <= MAX_STEPS:
            raise ValueError(f"steps={self.steps}: the studio samples with 1 to {MAX_STEPS} steps")
        if not 1 <= self.n <= MAX_N:
            raise ValueError(f"n={self.n}: the studio samples 1 to {MAX_N} triples per request")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {sorted(SAMPLERS)}")

    def check_work(self, at_model: Layout) -> None:
        """Refuse a request whose triples × steps × pixels (on the model's canvas) is over the limit."""
        work = self.n * self.steps * at_model.width * at_model.height
        if work > MAX_PIXEL_STEPS:
            raise ValueError(
                f"{self.n} triple(s) × {self.steps} steps on a {at_model.width}×{at_model.height} px model canvas "
                f"is {work / 1e6:.0f} million pixel-steps, over the studio's {MAX_PIXEL_STEPS / 1e6:.0f} million per "
                "request (about 3 minutes of this CPU); ask for fewer triples or steps, or a smaller canvas")


class CancelRegistry:
    """One cancel flag per browser session, so the Cancel button reaches the running job, and
    a 'finished' event per run, so Cancel can report only once the run has really ended."""

    def __init__(self) -> None:
        self._runs: dict[str, tuple[threading.Event, threading.Event]] = {}
        self._lock = threading.Lock()

    def begin(self, session: str) -> threading.Event:
        flag = threading.Event()
        with self._lock:
            self._runs[session] = (flag, threading.Event())
        return flag

    def cancel(self, session: str, wait_s: float = 0.0) -> bool:
        """Set the session's flag and wait up to `wait_s` for its run to end; False if none runs."""
        with self._lock:
            run = self._runs.get(session)
        if run is None:
            return False
        flag, finished = run
        flag.set()
        finished.wait(wait_s)
        return True

    def end(self, session: str, flag: threading.Event) -> None:
        with self._lock:
            run = self._runs.get(session)
            if run is not None and run[0] is flag:  # a newer run of the session keeps its entry
                del self._runs[session]
                run[1].set()


_DONE, _FAILED = "done", "failed"
JOIN_S = 60.0  # longest a closed stream waits for the worker to finish its current step


def stream_samples(pipe: CoSynPipeline, layout: Layout, prompt: str | None, settings: SampleSettings,
                   cancel: threading.Event) -> Iterator[StepPreview | list[Triple]]:
    """Yields StepPreviews while sampling, then the list of triples. Raises what the pipeline
    raises (SamplingCancelled when `cancel` was set)."""
    inbox: queue.Queue = queue.Queue()

    def on_step(preview: StepPreview) -> bool:
        if cancel.is_set():
            return False
        inbox.put(preview)
        return True

    def work() -> None:
        try:
            triples = pipe.sample(layout, prompt=prompt or None, steps=settings.steps, guidance=settings.guidance,
                                  seed=settings.seed, n=settings.n, sampler=settings.sampler, on_step=on_step)
            inbox.put((_DONE, triples))
        except BaseException as e:  # handed to the consumer, which re-raises it where the UI can report it
            inbox.put((_FAILED, e))

    worker = threading.Thread(target=work, name="cosyn-sample", daemon=True)
    worker.start()
    try:
        while True:
            item = inbox.get()
            while isinstance(item, StepPreview) and not inbox.empty():
                item = inbox.get()  # the browser only needs the newest preview
            if isinstance(item, StepPreview):
                yield item
                continue
            kind, payload = item
            if kind == _FAILED:
                raise payload
            yield payload
            return
    finally:
        cancel.set()  # a consumer that stops early (tab closed, cancelled) stops the worker too
        worker.join(JOIN_S)  # and the sampling slot stays taken until its forward pass has ended
