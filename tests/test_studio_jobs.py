"""Studio training job: a real tiny `cosyn train` process started, stopped, resumed and exported."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_train import _dataset
from tiny import TINY_DENOISER

from cosyn.studio.jobs import JobError, JobManager, JobSpec, JobView, log_tail, metrics
from cosyn.studio.models import list_models
from cosyn.training.checkpoints import checkpoint_dirs

TINY_OPTIONS = {"denoiser": TINY_DENOISER, "mpp": 0.25, "val_fraction": 0, "save_every": 1000, "log_every": 1,
                "preview_every": 0, "threads": 1}


def _wait(manager: JobManager, done, timeout: float = 240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        view = manager.view()
        if done(view):
            return view
        time.sleep(0.2)
    raise AssertionError(f"timed out; last view {manager.view()}; log:\n{log_tail(Path(manager.view().run))}")


def test_job_runs_in_the_background_stops_resumes_and_exports(tmp_path):
    data = _dataset(tmp_path / "data")
    runs, ckpts = tmp_path / "runs", tmp_path / "checkpoints"
    manager = JobManager(runs, ckpts, poll_s=0.2)
    spec = JobSpec("tiny", str(data), steps=5000, batch=2, crop=32, export_name="tiny-ft", options=TINY_OPTIONS)
    assert manager.start(spec).state == "starting"
    view = _wait(manager, lambda v: v.state == "running")
    assert view.total == 5000 and view.alive

    with pytest.raises(JobError, match="already running"):
        manager.start(JobSpec("other", str(data), options=TINY_OPTIONS))
    # a reloaded page (or a restarted studio) reads the same state back from disk
    assert JobManager(runs, ckpts).view().state in ("running", "stopped")

    manager.stop()
    view = _wait(manager, lambda v: not v.alive)
    assert view.state == "stopped"
    assert checkpoint_dirs(Path(view.run))[-1].name == f"step_{view.step:07d}"
    assert view.exported is None  # a stop is not a finish: nothing exported on its own
    assert list_models(ckpts) == []

    # a time-limited run records the step count that fits in run_config.json; Resume keeps to it
    fitted = view.step + 2
    run_config = Path(view.run) / "run_config.json"
    recorded = json.loads(run_config.read_text())
    recorded["train"]["steps"] = fitted
    run_config.write_text(json.dumps(recorded))
    manager.resume()
    view = _wait(manager, lambda v: v.exported is not None and not v.alive)
    assert (view.state, view.step) == ("finished", fitted)

    target = fitted + 2  # and Resume with a step count extends it
    manager.resume(steps=target)
    view = _wait(manager, lambda v: v.exported is not None and not v.alive)
    assert (view.state, view.step) == ("finished", target)
    assert [m.name for m in list_models(ckpts)] == ["tiny-ft"]
    assert "tiny-ft" in (ckpts / "tiny-ft" / "MODEL_CARD.md").read_text()
    assert [m["step"] for m in metrics(Path(view.run))] == list(range(1, target + 1))
    assert "resumed from" in log_tail(Path(view.run))

    with pytest.raises(JobError, match="already has checkpoints"):
        manager.start(spec)
    assert manager.export("tiny-again") == ckpts / "tiny-again"
    with pytest.raises(JobError, match="already exists"):
        manager.export("tiny-ft")  # exported by this run, but since renamed: not overwritten


def test_bad_options_and_names_are_refused_before_anything_starts(tmp_path):
    manager = JobManager(tmp_path / "runs", tmp_path / "checkpoints")
    data = str(tmp_path / "data")  # beside the runs folder: a run inside its data is refused (its own test)
    with pytest.raises(JobError, match="unknown training options"):
        manager.start(JobSpec("r", data, options={"stepz": 3}))
    with pytest.raises(JobError, match="threads=100000 is more than this machine's"):
        manager.start(JobSpec("r", data, options={"threads": 100000}))
    with pytest.raises(Exception, match="run name"):
        manager.start(JobSpec("../r", data))
    assert manager.view() is None
    with pytest.raises(JobError, match="no earlier job"):
        manager.resume()
    with pytest.raises(JobError, match="no training job is running"):
        manager.stop()


def test_a_process_that_died_silently_shows_as_crashed(tmp_path):
    runs = tmp_path / "runs"
    run = runs / "dead"
    run.mkdir(parents=True)
    gone = subprocess.Popen(["true"])
    gone.wait()
    (run / "status.json").write_text(json.dumps({"state": "running", "step": 7, "total": 10, "pid": gone.pid}))
    (run / "studio_job.log").write_text("Traceback ...\nMemoryError\n")
    (runs / "studio_job.json").write_text(json.dumps({"run": str(run), "pid": gone.pid, "export_name": "dead",
                                                      "auto_export": True, "exported": None}))
    view = JobManager(runs, tmp_path / "checkpoints").view()
    assert (view.state, view.step, view.alive) == ("crashed", 7, False)
    assert "MemoryError" in view.error


FAKE_TRAINER = """#!/bin/sh
# stands in for `python -m cosyn train --config RUN/studio_train_config.json`: finishes at once
run=$(dirname "$5")
printf '{"state": "finished", "step": 1, "total": 1, "pid": %s}' $$ > "$run/status.tmp"
mv "$run/status.tmp" "$run/status.json"
"""


def test_a_job_started_right_after_another_ended_leaves_each_its_own_export(tmp_path, monkeypatch):
    """Start before the ended job's watcher looks again: the old watcher must not follow the new job, and
    the finished job is still exported (once), before its record is replaced. The watchers wait on an
    event the test sets, not on a clock, so a loaded machine cannot let one look early."""
    import cosyn.training.checkpoints

    fake = tmp_path / "fake_trainer"
    fake.write_text(FAKE_TRAINER)
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    exported = []

    def fake_export(run, out, overwrite=False):
        exported.append(Path(run).name)
        Path(out).mkdir(parents=True)

    monkeypatch.setattr(cosyn.training.checkpoints, "export_checkpoint", fake_export)
    looks = threading.Event()

    def held(seconds: float) -> None:
        looks.wait()
        time.sleep(0.01)

    manager = JobManager(tmp_path / "runs", tmp_path / "checkpoints", sleep=held)
    manager.start(JobSpec("a", str(tmp_path / "data"), options={"threads": 1}))
    deadline = time.time() + 120  # only a bound on a hung process; the order below does not depend on it
    while manager.view().alive and time.time() < deadline:
        time.sleep(0.02)
    assert manager.view().state == "finished" and exported == []  # a's watcher has not looked yet
    manager.start(JobSpec("b", str(tmp_path / "data"), options={"threads": 1}))
    looks.set()
    for watcher in [t for t in threading.enumerate() if t.name == "cosyn-job-watch"]:
        watcher.join(timeout=10)
    assert exported == ["a", "b"]
    assert manager.view().exported == str(tmp_path / "checkpoints" / "b")


def test_the_live_view_keeps_its_preview_through_a_half_written_png_and_skips_an_unchanged_plot(tmp_path):
    import numpy as np
    from PIL import Image

    from cosyn.studio.train_events import live_update

    run = tmp_path / "run"
    (run / "previews").mkdir(parents=True)
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(run / "previews" / "step_0000002.png")
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    ctx = SimpleNamespace(jobs=SimpleNamespace(view=lambda: JobView(run=str(run), state="running")),
                          model_names=lambda: ["default"])
    seen = {"models": ["default"], "preview": None, "metrics": None}
    tick = live_update(ctx, seen)
    assert list(tick.plot["step"]) == [1] and tick.picture.shape == (8, 8, 3) and tick.models is None

    full = (run / "previews" / "step_0000002.png").read_bytes()
    (run / "previews" / "step_0000004.png").write_bytes(full[: len(full) // 2])  # caught mid-write
    tick = live_update(ctx, tick.seen)
    assert tick.plot is None and tick.picture is None  # metrics.jsonl unchanged, the old preview stays
    assert tick.seen["preview"].endswith("step_0000002.png")

    (run / "previews" / "step_0000004.png").write_bytes(full)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 2, "loss": 0.4}\n')
    tick = live_update(ctx, tick.seen)  # next tick: both arrive
    assert list(tick.plot["step"]) == [1, 2] and tick.picture.shape == (8, 8, 3)
    assert tick.seen["preview"].endswith("step_0000004.png")


def test_a_run_or_export_folder_that_holds_its_input_is_refused_before_anything_starts(tmp_path):
    runs, ckpts = tmp_path / "runs", tmp_path / "checkpoints"
    uploaded = _dataset(runs / "uploads" / "tiles-1234")  # where the Train tab unpacks an uploaded zip
    manager = JobManager(runs, ckpts)
    with pytest.raises(JobError, match="run name .*uploads contains the input"):
        manager.start(JobSpec("uploads", str(uploaded), options=TINY_OPTIONS))
    cached = {**TINY_OPTIONS, "text_cache": str(runs / "cache" / "t")}  # an input option inside the run
    with pytest.raises(JobError, match="run name .* contains the input"):
        manager.start(JobSpec("cache", str(_dataset(tmp_path / "data")), options=cached))
    assert manager.view() is None and sorted(p.name for p in runs.iterdir()) == ["uploads"]  # nothing launched
    # an export whose folder would hold the run it exports (checkpoints configured inside the runs folder)
    inside = JobManager(runs, runs / "tiny")
    (runs / "tiny").mkdir()
    inside._save_record({"run": str(runs / "tiny"), "export_name": "ckpt"})
    with pytest.raises(JobError, match="export name .* lies inside the input"):
        inside.export()
