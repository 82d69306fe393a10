"""The studio's background training job: one at a time, in its own process.

The job is `python -m cosyn train` in a new session, so it outlives the browser tab and even
a restart of the studio (Ctrl-C in the studio's terminal does not reach it). What the studio
knows about it lives on disk: `RUNS/studio_job.json` names the run, the process and the
export, and the run's own `status.json` says how far it got. A reloaded page, or a restarted
studio, reads both and shows the same state. Stop sends SIGTERM, on which the trainer saves a
checkpoint and exits; Resume starts it again with `--resume`. A finished job is exported to
`CHECKPOINTS/<name>` by a watcher thread, so the model appears even if no page is open.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cosyn.io.fileio import atomic_write
from cosyn.io.guards import OverlapError, refuse_overlap
from cosyn.studio.paths import check_name
from cosyn.training.config import merged_config
from cosyn.training.status import read_status

RECORD_NAME = "studio_job.json"
CONFIG_NAME = "studio_train_config.json"
OUTPUT_NAME = "studio_job.log"
ACTIVE = ("starting", "loading", "running")


class JobError(RuntimeError):
    """A job request the studio refuses; the message says why."""


def _refuse_overlap(source: str | Path, out: Path, what: str) -> None:
    """guards.refuse_overlap, as a JobError (what the Train tab and the export watcher expect)."""
    try:
        refuse_overlap(source, out, what)
    except OverlapError as e:
        raise JobError(str(e)) from None


@dataclass
class JobSpec:
    """A training job of the Train tab: the run and export names, the form's named fields (None: TrainConfig's
    default) and any further TrainConfig options (the form's JSON box), which the named fields override."""

    run_name: str
    data: str
    fmt: str | None = None
    init: str | None = None
    steps: int | None = None
    batch: int | None = None
    lr: float | None = None
    crop: int | None = None
    export_name: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # any further TrainConfig knobs

    def train_options(self, out: Path) -> dict[str, Any]:
        """The job's TrainConfig (defaults ← options ← named fields), validated, as the options to write."""
        named = {"data": self.data, "out": str(out), "format": self.fmt, "init": self.init, "steps": self.steps,
                 "batch": self.batch, "lr": self.lr, "crop": self.crop}
        try:
            cfg = merged_config(self.options, named)
        except (TypeError, ValueError) as e:  # TrainConfig also bounds threads and workers by the CPU count
            raise JobError(f"training options: {e}") from None
        return asdict(cfg)


@dataclass
class JobView:
    """What the Train tab shows."""

    run: str
    state: str
    step: int = 0
    total: int = 0
    eta_s: float | None = None
    loss: float | None = None
    error: str | None = None
    export_name: str = ""
    exported: str | None = None
    alive: bool = False

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


def _pid_is_trainer(pid: int) -> bool:
    """The pid runs `cosyn train` (a reused pid of another program does not count)."""
    try:
        os.kill(pid, 0)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (ProcessLookupError, PermissionError, FileNotFoundError):
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    zombie = stat.rsplit(")", 1)[-1].split()[0] == "Z"
    return not zombie and b"cosyn" in cmdline and b"train" in cmdline


class JobManager:
    def __init__(self, runs: Path, checkpoints: Path, poll_s: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """`sleep` is how a watcher waits `poll_s` between looks at its process (a test holds it back)."""
        self.runs, self.checkpoints, self.poll_s = Path(runs).absolute(), Path(checkpoints).absolute(), poll_s
        self._sleep = sleep
        self._proc: subprocess.Popen | None = None
        self._lock = threading.RLock()
        rec = self._record()
        if rec and not rec.get("exported"):  # a job of an earlier studio: follow it to its end
            self._watch(rec["pid"])

    # -- the record ----------------------------------------------------------------------------
    @property
    def record_path(self) -> Path:
        return self.runs / RECORD_NAME

    def _record(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.record_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _save_record(self, rec: dict[str, Any]) -> None:
        atomic_write(self.record_path, lambda tmp: Path(tmp).write_text(json.dumps(rec, indent=1)))

    def _alive(self, rec: dict[str, Any]) -> bool:
        if self._proc is not None and self._proc.pid == rec["pid"]:
            return self._proc.poll() is None  # our child: poll() also reaps it
        return _pid_is_trainer(rec["pid"])

    # -- reading ----------------------------------------------------------------------------------
    def view(self) -> JobView | None:
        with self._lock:
            rec = self._record()
            if rec is None:
                return None
            alive = self._alive(rec)
        status = read_status(Path(rec["run"]) / "status.json")
        state = status.get("state")
        if status.get("pid") != rec["pid"]:
            state = None  # written by an earlier process of this run
        if alive and state not in ACTIVE:
            state = "starting"
        elif not alive and (state is None or state in ACTIVE):
            state = "crashed"  # died without saying so (killed, out of memory, failed to start)
        error = status.get("last_error") if state == "failed" else None
        if state == "crashed":
            error = output_tail(Path(rec["run"]), 15) or "the training process ended without a status"
        return JobView(run=rec["run"], state=state, step=int(status.get("step", 0)),
                       total=int(status.get("total", 0)), eta_s=status.get("eta_s"), loss=status.get("loss"),
                       error=error or rec.get("export_error"), export_name=rec.get("export_name", ""),
                       exported=rec.get("exported"), alive=alive)

    # -- control ------------------------------------------------------------------------------------
    def start(self, spec: JobSpec) -> JobView:
        with self._lock:
            self._refuse_if_active()
            previous = self._record()
            if previous is not None:  # ended just now, before its watcher looked: export it before it is replaced
                self._auto_export(previous["pid"])
            run = self.runs / check_name(spec.run_name, "run name")
            # the run folder is written, and is what an export later reads: never the data or its parent
            # (an uploaded dataset lies in RUNS/uploads, so the run name "uploads" would hold it)
            _refuse_overlap(spec.data, run, "run name")
            if spec.options.get("text_cache"):
                _refuse_overlap(spec.options["text_cache"], run, "run name")
            if (run / "checkpoints").is_dir() and any((run / "checkpoints").iterdir()):
                raise JobError(f"run {run.name!r} already has checkpoints: Resume it, or choose another run name")
            export_name = check_name(spec.export_name or spec.run_name, "export name")
            if (self.checkpoints / export_name).exists():
                raise JobError(f"checkpoint {export_name!r} already exists in {self.checkpoints}; "
                               "choose another export name")
            run.mkdir(parents=True, exist_ok=True)
            options = json.dumps(spec.train_options(run), indent=1)
            atomic_write(run / CONFIG_NAME, lambda tmp: Path(tmp).write_text(options))
            rec = {"run": str(run), "export_name": export_name, "auto_export": True, "exported": None,
                   "spec": asdict(spec)}
            return self._launch(rec, ["--config", str(run / CONFIG_NAME)])

    def resume(self, steps: int | None = None) -> JobView:
        with self._lock:
            self._refuse_if_active()
            rec = self._record()
            if rec is None:
                raise JobError("there is no earlier job to resume")
            run = Path(rec["run"])
            # the run's own record, not the job's first config: it holds the step count a time limit fitted
            recorded = (run / "run_config.json").is_file()
            source = ["--out", str(run)] if recorded else ["--config", str(run / CONFIG_NAME)]
            args = [*source, "--resume"] + (["--steps", str(int(steps))] if steps else [])
            return self._launch({**rec, "exported": None, "export_error": None}, args)

    def stop(self) -> JobView:
        with self._lock:
            rec = self._record()
            if rec is None or not self._alive(rec):
                raise JobError("no training job is running")
            os.kill(rec["pid"], signal.SIGTERM)  # the trainer saves a checkpoint, then exits
            return self.view()

    def export(self, name: str | None = None) -> Path:
        """Export the run's latest checkpoint to CHECKPOINTS/<name> (default: the job's export name)."""
        from cosyn.training.checkpoints import export_checkpoint
        from cosyn.training.config import TrainingError

        with self._lock:
            rec = self._record()
            if rec is None:
                raise JobError("there is no training run to export")
            name = check_name(name or rec["export_name"], "export name")
            out = self.checkpoints / name
            _refuse_overlap(rec["run"], out, "export name")  # replacing `out` must not delete the run
            # the run may replace the folder it last wrote, also after a Resume (which clears "exported")
            if out.exists() and str(out) != rec.get("own_export"):
                raise JobError(f"checkpoint {name!r} already exists and was not exported by this run; "
                               "choose another name")
            try:
                export_checkpoint(rec["run"], out, overwrite=True)
            except (TrainingError, FileNotFoundError) as e:
                raise JobError(f"export failed: {e}") from None
            self._save_record({**rec, "exported": str(out), "own_export": str(out), "export_name": name,
                               "export_error": None})
            return out

    # -- internals ----------------------------------------------------------------------------------
    def _refuse_if_active(self) -> None:
        current = self.view()
        if current is not None and current.alive:
            raise JobError(f"a training job is already running ({Path(current.run).name}, {current.state}, "
                           f"step {current.step}/{current.total}); stop it first")

    def _launch(self, rec: dict[str, Any], args: list[str]) -> JobView:
        run = Path(rec["run"])
        cmd = [sys.executable, "-m", "cosyn", "train", *args]
        with open(run / OUTPUT_NAME, "ab") as out:
            self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True)
        self._save_record({**rec, "pid": self._proc.pid, "cmd": cmd, "started": time.time()})
        self._watch(self._proc.pid)
        return self.view()

    def _watch(self, pid: int) -> None:
        threading.Thread(target=self._follow, args=(pid,), name="cosyn-job-watch", daemon=True).start()

    def _follow(self, pid: int) -> None:
        """Wait for the process `pid` to end, then export its job if it finished. Once the record
        names another process, a newer job has taken over (Start exports a finished one first): stop."""
        while True:
            self._sleep(self.poll_s)  # first: a job is never over the moment it starts
            with self._lock:
                rec = self._record()
                if rec is None or rec.get("pid") != pid or rec.get("exported"):
                    return
                if not self._alive(rec):
                    self._auto_export(pid)
                    return

    def _auto_export(self, pid: int) -> None:
        """Export the job of process `pid` if it finished and is not exported yet; a failure is
        kept in the record for the page to show."""
        with self._lock:
            rec = self._record()
            if rec is None or rec.get("pid") != pid or rec.get("exported") or not rec.get("auto_export"):
                return
            view = self.view()
            if view is None or view.alive or view.state != "finished":
                return
            try:
                self.export()
            except JobError as e:
                self._save_record({**(self._record() or rec), "export_error": str(e)})


# -- what the live view reads -----------------------------------------------------------------------
def metrics(run: Path, keep: int = 2000) -> list[dict[str, float]]:
    """(step, loss) rows of metrics.jsonl, thinned evenly to at most `keep`."""
    path = Path(run) / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            m = json.loads(line)
            rows.append({"step": int(m["step"]), "loss": float(m["loss"])})
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # a line being written right now
    stride = max(1, len(rows) // keep)
    return rows[::stride]


def _tail(path: Path, n: int) -> list[str]:
    if not path.exists():
        return []
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 64 * 1024))
        text = f.read().decode("utf-8", "replace")
    # tqdm redraws its bar with carriage returns: keep only the last state of each line
    lines = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
    return [line for line in lines if line.strip()][-n:]


def output_tail(run: Path, n: int = 20) -> str:
    """The last lines the training process printed (progress bar, traceback)."""
    return "\n".join(_tail(Path(run) / OUTPUT_NAME, n))


def log_tail(run: Path, n: int = 30) -> str:
    """train.log's last lines, then the current progress line."""
    lines = _tail(Path(run) / "train.log", n)
    progress = _tail(Path(run) / OUTPUT_NAME, 1)
    return "\n".join(lines + progress)


def latest_preview(run: Path) -> Path | None:
    previews = sorted((Path(run) / "previews").glob("step_*.png"))
    return previews[-1] if previews else None
