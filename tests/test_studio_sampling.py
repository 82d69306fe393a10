"""Studio sampling: streamed previews, cancel, result views, session bundles and their zip.

`pipe` is conftest's tiny random-weight pipeline.
"""

from __future__ import annotations

import threading
import time
import zipfile

import numpy as np
import pytest

from cosyn.core.classes import CONSEP
from cosyn.core.layout import Layout, Point
from cosyn.io.export import FORMATS
from cosyn.model.pipeline import SamplingCancelled, StepPreview
from cosyn.model.settings import SamplingSettings
from cosyn.studio import gallery
from cosyn.studio.sampling import CancelRegistry, Request, check_request, stream_samples
from cosyn.studio.views import missed_line, preview_views, stages_line, triple_views


def _layout() -> Layout:
    pts = [Point(10, 12, "epithelial"), Point(40, 30, "inflammatory"), Point(50, 55, "spindle")]
    return Layout(64, 64, CONSEP.to_list(), pts, 0.5, "colon")


def _sampling(pipe, settings: SamplingSettings):
    """What a Request hands `stream_samples`: sampling, given where to send the previews."""
    return lambda on_step: pipe.sample(_layout(), None, settings, on_step=on_step)


def test_stream_yields_previews_then_the_triples(pipe):
    items = list(stream_samples(_sampling(pipe, SamplingSettings(steps=3, n=2)), threading.Event()))
    *previews, triples = items
    assert previews and all(isinstance(p, StepPreview) for p in previews)
    assert previews[-1].step == 3  # older previews may be skipped, never the last
    assert len(triples) == 2 and triples[0].image.shape == (64, 64, 3)


def test_the_last_preview_is_shown_however_far_the_worker_ran_ahead():
    seen = threading.Event()

    def sample(on_step):
        blank = np.zeros((2, 2))
        for step in range(1, 6):
            on_step(StepPreview(step, 5, blank, blank, blank))
            if step == 1:
                seen.wait()  # the page has the first preview; the rest arrive while it is away
        return ["the triples"]

    stream = stream_samples(sample, threading.Event())
    assert next(stream).step == 1
    seen.set()
    (worker,) = [t for t in threading.enumerate() if t.name == "cosyn-sample" and t.is_alive()]
    worker.join(timeout=60)  # everything is queued: previews 2..5, then the result
    assert [getattr(item, "step", item) for item in stream] == [5, ["the triples"]]


def test_cancel_stops_the_worker_between_steps(pipe):
    flag = threading.Event()
    stream = stream_samples(_sampling(pipe, SamplingSettings(steps=50)), flag)
    assert isinstance(next(stream), StepPreview)
    flag.set()
    with pytest.raises(SamplingCancelled, match=r"^Cancelled at step \d+ of 50$"):
        list(stream)
    for worker in [t for t in threading.enumerate() if t.name == "cosyn-sample"]:
        worker.join(timeout=10)
        assert not worker.is_alive()


class _SlowPipe:
    """`pipe` with a forward pass that is still running after each preview went out."""

    def __init__(self, pipe) -> None:
        self.pipe = pipe

    def sample(self, *args, on_step, **kwargs):
        def slow_step(preview):
            going_on = on_step(preview)
            time.sleep(0.3)
            return going_on

        return self.pipe.sample(*args, on_step=slow_step, **kwargs)


def test_closing_the_stream_early_stops_and_joins_the_worker(pipe):
    flag = threading.Event()
    stream = stream_samples(_sampling(_SlowPipe(pipe), SamplingSettings(steps=50)), flag)
    next(stream)
    (worker,) = [t for t in threading.enumerate() if t.name == "cosyn-sample" and t.is_alive()]
    stream.close()  # what happens when the browser tab goes away
    assert flag.is_set()
    assert not worker.is_alive()  # the sampling slot is free only once the forward pass has ended


def test_the_studio_caps_requests_on_top_of_the_pipeline_limits():
    with pytest.raises(ValueError, match="unknown sampler"):
        SamplingSettings(sampler="euler")
    classes = ["background", "other"]
    small = Layout(256, 256, classes, [])
    with pytest.raises(ValueError, match="1 to 100 steps"):
        check_request(SamplingSettings(steps=101), small)  # the pipeline would take it; the studio does not
    with pytest.raises(ValueError, match="1 to 8 triples"):
        check_request(SamplingSettings(n=9), small)
    check_request(SamplingSettings(steps=50, n=8), small)  # the limit itself
    check_request(SamplingSettings(steps=25, n=1), Layout(1024, 1024, classes, []))
    with pytest.raises(ValueError, match=r"8 triple\(s\) × 51 steps on a 256×256 px model canvas is 27 million"):
        check_request(SamplingSettings(steps=51, n=8), small)
    with pytest.raises(ValueError, match="over the studio's 26 million"):
        check_request(SamplingSettings(steps=100, n=1), Layout(1024, 1024, classes, []))


def test_a_request_is_checked_before_it_samples_and_saves_its_bundles(pipe, tmp_path):
    with pytest.raises(ValueError, match="1 to 8 triples"):
        Request(pipe, _layout(), None, SamplingSettings(n=9))
    req = Request(pipe, _layout(), None, SamplingSettings(steps=2, n=2, seed=4))
    *previews, saved = list(req.run(threading.Event(), tmp_path / "s", first_index=3, checkpoint="tiny"))
    assert all(isinstance(p, StepPreview) for p in previews) and len(saved.triples) == 2
    assert [e["caption"].split(" · ")[0] for e in saved.entries] == ["#3", "#4"]
    assert gallery.load(saved.entries[0]).params["seed"] == 4
    assert (req.canvas.width, req.canvas.mpp) == (64, 0.5)


def test_cancel_registry():
    reg = CancelRegistry()
    assert reg.cancel("s1") is None  # nothing runs
    old = reg.begin("s1")
    flag = reg.begin("s1")  # a newer run of the same session
    reg.end("s1", old, "the old run's line")  # the old run ending late leaves the new one cancellable
    ending = threading.Event()

    def end_late() -> None:
        ending.set()
        reg.end("s1", flag, "Cancelled at step 3 of 9.")

    ended = threading.Timer(0.2, end_late)
    ended.start()
    # Cancel answers only once the run has ended, and with the run's own last line
    assert reg.cancel("s1", wait_s=10) == "Cancelled at step 3 of 9."
    assert ending.is_set() and flag.is_set() and not old.is_set()
    ended.join()
    reg.end("s1", flag, "a second end")  # changes nothing
    assert reg.cancel("s1") is None


def test_cancel_that_outwaits_its_wait_says_so_without_the_runs_line():
    reg = CancelRegistry()
    flag = reg.begin("s1")
    assert reg.cancel("s1", wait_s=0.05) == "" and flag.is_set()  # the run has not ended yet
    reg.end("s1", flag, "Cancelled at step 1 of 2.")
    assert reg.cancel("s1") is None


def test_views_and_missed_line(pipe):
    layout = _layout()
    previews = []
    triple = pipe.sample(layout, steps=2, on_step=previews.append)[0]
    v = triple_views(triple, opacity=0.7)
    for img in (v.image, v.overlay, v.contours, v.dist):
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    p = preview_views(previews[-1], pipe.conform_layout(layout), 0.5)
    assert p.contours.shape == (64, 64, 3)
    assert missed_line({"centroids": 3, "missed_centroids": 0}) == "All 3 centroids produced an instance."
    line = missed_line({"centroids": 3, "missed_centroids": 2, "missed_indices": [0, 2]})
    assert line.startswith("2 of 3 centroids produced no instance") and "#0, #2" in line


def test_session_bundles_zip_with_every_format(pipe, tmp_path):
    triples = pipe.sample(_layout(), steps=2, n=2, seed=5)
    entries = gallery.save_triples(triples, tmp_path / "session", first_index=1, checkpoint="tiny")
    assert [e["caption"].split(" · ")[0] for e in entries] == ["#1", "#2"]
    assert gallery.load(entries[1]).params["checkpoint"] == "tiny"
    archive = gallery.export_zip(entries, tmp_path / "exports")
    names = zipfile.ZipFile(archive).namelist()
    for e in entries:
        folder = e["dir"].rsplit("/", 1)[-1]
        for f in ("image.png", "class.png", "inst.tif", "inst.npy", "dist.npy", "layout.json", "params.json",
                  "hovernet.mat", "qupath.geojson", "coco.json"):
            assert f"{folder}/{f}" in names
    assert set(FORMATS) == {"png", "npy", "mat", "geojson", "coco"}  # the formats the list above covers


def test_a_refined_triple_is_shown_at_its_own_size(tmp_path):
    from tiny import tiny_pipeline

    pipe = tiny_pipeline()
    fine = Layout(64, 64, CONSEP.to_list(), _layout().points, 0.25, "colon")  # the model samples it at 32²
    *_, refined = Request(pipe, fine, None, SamplingSettings(steps=1)).run(threading.Event(), tmp_path, 1, "r")
    base = pipe.sample(fine, steps=1, refine=False)[0]
    assert stages_line(refined.triples[0]) == "base + upsampler at 0.25 µm/px"
    assert stages_line(base) == "base at 0.5 µm/px"
    for t, side in ((refined.triples[0], 64), (gallery.load(refined.entries[0]), 64), (base, 32)):
        v = triple_views(t, 0.5)
        assert {a.shape for a in (v.image, v.overlay, v.contours, v.dist)} == {(side, side, 3)}


def test_the_speed_model_learns_this_machines_seconds_per_pixel_step():
    from cosyn.studio.sampling import SpeedModel, duration

    canvas = Layout(128, 128, ["background", "epithelial"], [])
    speed = SpeedModel(guess=1e-6)
    settings = SamplingSettings(steps=25, n=2)
    assert speed.estimate(settings, canvas) == pytest.approx(1e-6 * 2 * 25 * 128 * 128)
    for seconds in (8.0, 2.0, 4.0):  # runs of the same size: the median, 4 s, is the new estimate
        speed.record(settings, canvas, seconds)
    assert speed.estimate(settings, canvas) == pytest.approx(4.0)
    assert speed.estimate(settings.with_(steps=50), canvas) == pytest.approx(8.0)
    assert (duration(42), duration(600)) == ("42 s", "10 min")


def test_an_edit_request_conforms_its_layout_once(monkeypatch, tmp_path):
    """The request conforms to check its caps; the edit reuses that canvas instead of conforming again."""
    from conftest import disc_sample
    from tiny import tiny_pipeline

    from cosyn.data.targets import layout_from_sample
    from cosyn.studio.sampling import TileEdit

    pipe, tile = tiny_pipeline(), disc_sample(n=6, size=(64, 64), radius=5, seed=3)
    original = layout_from_sample(tile)
    edited = Layout(original.width, original.height, original.classes,
                    [*original.points, Point(58.0, 58.0, "inflammatory")], original.mpp, original.tissue)
    conformed = []
    real_conform = pipe.conform_layout
    monkeypatch.setattr(pipe, "conform_layout", lambda *a, **k: conformed.append(a) or real_conform(*a, **k))
    *_, result = Request(pipe, edited, None, SamplingSettings(steps=1), edit=TileEdit(tile)).run(
        threading.Event(), tmp_path, 1, "e")
    assert len(conformed) == 1
    assert result  # the edit ran to its saved result
