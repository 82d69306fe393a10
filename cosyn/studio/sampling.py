"""Sampling for the studio: the pipeline in a worker thread, previews through a queue, cancel.

Gradio streams a generator's yields to the browser, but the pipeline reports progress through
a callback. The worker thread runs `pipe.sample` and puts each preview on a queue; the
generator here hands them out (latest first, older ones dropped when the browser lags) and
ends with the triples. A threading.Event checked in the callback stops the worker between
steps, whoever sets it: the Cancel button, or the generator closing because the tab went away.
"""

from __future__ import annotations

import queue
import statistics
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cosyn.core.layout import Layout
from cosyn.core.triple import Triple
from cosyn.data.sample import Sample
from cosyn.editing import edit_tile
from cosyn.enrichment import enrich, record_in
from cosyn.model.pipeline import CoSynPipeline, StepPreview
from cosyn.model.settings import SamplingSettings
from cosyn.stages.texture.stain import Stain
from cosyn.studio import gallery

MAX_STEPS, MAX_N = 100, 8  # per run, on the page and through the API: bounds what one request costs
# ...and so does their product with the canvas: a request holds the only sampling slot. 8 triples of 50 steps
# on a 256² model canvas, or one 1024² triple of 25 steps; about 3 minutes on a 2-core CPU (6.9 µs per
# pixel-step: 2.8 s for 25 steps on 128², `benchmarks/sample_latency.py`).
MAX_PIXEL_STEPS = 8 * 50 * 256 * 256
SECONDS_PER_PIXEL_STEP = 6.9e-6  # the first guess, until this studio has timed runs of its own
LONG_RUN_S = 60.0  # a run estimated longer than this starts only on a second click


class SpeedModel:
    """How long a request will take here: seconds per pixel-step, the median of the last runs timed
    in this studio (the machine's own speed and load), a measured guess before the first."""

    def __init__(self, guess: float = SECONDS_PER_PIXEL_STEP, window: int = 5) -> None:
        self._guess, self._recent = guess, deque(maxlen=window)
        self._lock = threading.Lock()

    def estimate(self, settings: SamplingSettings, at_model: Layout) -> float:
        with self._lock:
            rate = statistics.median(self._recent) if self._recent else self._guess
        return rate * settings.pixel_steps(at_model.width, at_model.height)

    def record(self, settings: SamplingSettings, at_model: Layout, seconds: float) -> None:
        with self._lock:
            self._recent.append(seconds / settings.pixel_steps(at_model.width, at_model.height))


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def check_request(settings: SamplingSettings, at_model: Layout) -> None:
    """The studio's per-request caps on top of what the pipeline accepts: steps, triples, and
    triples × steps × pixels on the model's canvas (`at_model`, the layout as the base model samples it)."""
    settings.check_limits(MAX_STEPS, MAX_N, who="the studio")
    work = settings.pixel_steps(at_model.width, at_model.height)
    if work > MAX_PIXEL_STEPS:
        raise ValueError(
            f"{settings.n} triple(s) × {settings.steps} steps on a {at_model.width}×{at_model.height} px model "
            f"canvas is {work / 1e6:.0f} million pixel-steps, over the studio's {MAX_PIXEL_STEPS / 1e6:.0f} million "
            "per request (about 3 minutes of this CPU); ask for fewer triples or steps, or a smaller canvas")


@dataclass
class _Run:
    flag: threading.Event  # set by Cancel; the sampler stops between two steps
    finished: threading.Event = field(default_factory=threading.Event)
    outcome: str = ""  # the status line the run ended with


class CancelRegistry:
    """One cancel flag per browser session, so the Cancel button reaches the running job, and
    a 'finished' event per run, so Cancel can report only once the run has really ended, and with the run's own
    words: the Cancel button's answer and the run's last status line are one message, never two racing."""

    def __init__(self) -> None:
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()

    def begin(self, session: str) -> threading.Event:
        flag = threading.Event()
        with self._lock:
            self._runs[session] = _Run(flag)
        return flag

    def cancel(self, session: str, wait_s: float = 0.0) -> str | None:
        """Set the session's flag and wait up to `wait_s` for its run to end: None if none runs, else the line
        the run ended with ("" if it has not ended within `wait_s`)."""
        with self._lock:
            run = self._runs.get(session)
        if run is None:
            return None
        run.flag.set()
        run.finished.wait(wait_s)
        return run.outcome if run.finished.is_set() else ""

    def end(self, session: str, flag: threading.Event, outcome: str = "") -> None:
        """The run of `flag` has ended, saying `outcome`; later calls for the same run change nothing."""
        with self._lock:
            run = self._runs.get(session)
            if run is not None and run.flag is flag:  # a newer run of the session keeps its entry
                del self._runs[session]
                run.outcome = outcome
                run.finished.set()


_DONE, _FAILED = "done", "failed"
JOIN_S = 60.0  # longest a closed stream waits for the worker to finish its current step


OnStep = Callable[[StepPreview], bool]


def stream_samples(sample: Callable[[OnStep], list[Triple]],
                   cancel: threading.Event) -> Iterator[StepPreview | list[Triple]]:
    """Runs `sample(on_step)` in a worker thread; yields StepPreviews while it samples, then its list of
    triples. Raises what it raises (SamplingCancelled when `cancel` was set)."""
    inbox: queue.Queue = queue.Queue()

    def on_step(preview: StepPreview) -> bool:
        if cancel.is_set():
            return False
        inbox.put(preview)
        return True

    def work() -> None:
        try:
            inbox.put((_DONE, sample(on_step)))
        except BaseException as e:  # handed to the consumer, which re-raises it where the UI can report it
            inbox.put((_FAILED, e))

    worker = threading.Thread(target=work, name="cosyn-sample", daemon=True)
    worker.start()
    try:
        while True:
            item = _newest_preview(inbox, inbox.get())
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


def _newest_preview(inbox: queue.Queue, item: object) -> object:
    """`item`, or when it is a preview and newer previews wait behind it, the newest of them: the browser
    only needs the latest. The last preview before the result is always handed out, however fast the
    worker ran ahead of the page."""
    while isinstance(item, StepPreview):
        with inbox.mutex:  # a look at the next item without taking it
            newer = bool(inbox.queue) and isinstance(inbox.queue[0], StepPreview)
        if not newer:
            return item
        item = inbox.get()
    return item


@dataclass
class Saved:
    """What a finished request hands back: the triples and their bundles on disk."""

    triples: list[Triple]
    entries: list[gallery.Entry]


@dataclass
class TileEdit:
    """An edit of a real tile: the tile the edited layout came from, and the brushed region (None: around
    the changed nuclei)."""

    tile: Sample
    mask: np.ndarray | None = None


@dataclass
class Request:
    """One sampling request of the page or the API: conform → check → sample → save, in this order.

    Constructing it conforms the layout to the model and applies the studio's caps, so a refused
    request costs no sampling; `canvas` is the layout as the base model samples it (previews are
    cut on it). With `edit`, the request regenerates part of a real tile (cosyn.editing) the same way:
    live previews, then the result saved. With `enrich` ({class: factor}), `layout` becomes the enriched
    layout first (drawn from the settings' seed), and `enrichment` is what goes into each params.json. With
    `stain`, the triples come in that stain (refused for an edit, and where the second stage cannot apply it)."""

    pipe: CoSynPipeline
    layout: Layout
    prompt: str | None
    settings: SamplingSettings
    edit: TileEdit | None = None
    enrich: Mapping[str, float] | None = None
    stain: Stain | None = None  # the triples' stain (cosyn.stages.texture.stain); None: a drawn bank slide's
    canvas: Layout = field(init=False)
    enrichment: dict | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.enrich:
            if self.edit is not None:  # an edit keeps the tile's own nuclei; enrichment would add new ones
                raise ValueError("Enrichment makes a new layout and cannot be combined with editing a real tile: "
                                 "clear \"Enrich rare classes\" or untick \"Edit the loaded real tile\".")
            self.layout, self.enrichment = enrich(self.layout, self.enrich, self.settings.seed, self.pipe.config.mpp)
        if self.stain is not None:
            if self.edit is not None:  # the kept tissue keeps the tile's stain, and new nuclei take it on too
                raise ValueError("A stain reference colours a new tile; an edit keeps the loaded tile's own stain: "
                                 "clear \"Stain reference\" or untick \"Edit the loaded real tile\".")
            self.pipe.check_stain(self.layout, self.settings.refine)
        self.canvas = self.pipe.conform_layout(self.layout)
        check_request(self.settings, self.canvas)

    def sample(self, on_step: OnStep) -> list[Triple]:
        if self.edit is None:
            triples = self.pipe.sample(self.layout, self.prompt or None, self.settings, canvas=self.canvas,
                                       on_step=on_step, stain=self.stain)
            record_in(triples, self.enrichment)
            return triples
        triple = edit_tile(self.pipe, self.edit.tile, self.layout, self.edit.mask, settings=self.settings,
                           on_step=on_step, canvas=self.canvas)
        triple.params["edit"]["region"] = "brushed" if self.edit.mask is not None else \
            "margin around the changed nuclei"
        return [triple]

    def run(self, cancel: threading.Event, folder: Path, first_index: int,
            checkpoint: str) -> Iterator[StepPreview | Saved]:
        """StepPreviews while sampling, then the triples saved as bundles `first_index`... under `folder`."""
        for item in stream_samples(self.sample, cancel):
            if isinstance(item, StepPreview):
                yield item
            else:
                yield Saved(item, gallery.save_triples(item, folder, first_index, checkpoint))
