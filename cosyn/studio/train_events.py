"""Train tab wiring: dataset check, the job's buttons, and the live view.

The job itself is jobs.JobManager's, the dataset check datasets.validate_dataset's. A timer
reads the job's files every few seconds while the page is open; nothing here keeps state the
job needs, so closing the tab changes nothing. Handlers return {component: value}.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image

from cosyn.core.classes import ClassSet
from cosyn.studio import jobs
from cosyn.studio.context import StudioContext
from cosyn.studio.datasets import mapping_text, validate_dataset
from cosyn.studio.errors import notified
from cosyn.studio.jobs import JobSpec, JobView
from cosyn.studio.paths import check_upload, confine, extract_zip
from cosyn.studio.synthesize_tab import Updates
from cosyn.studio.train_tab import SCRATCH, TrainUI

POLL_S = 2.0
warned = notified()  # a refusal is a warning toast, with no Error overlay on the form


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes = int(seconds // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min {int(seconds % 60)} s"


def job_markdown(view: JobView | None) -> str:
    if view is None:
        return "No training job yet."
    parts = [f"**Run** `{Path(view.run).name}`", f"**{view.state}**"]
    if view.total:
        parts.append(f"step {view.step} / {view.total}")
    if view.loss is not None:
        parts.append(f"loss {view.loss:.4f}")
    if view.active and view.eta_s is not None:
        parts.append(f"ETA {_duration(view.eta_s)}")
    if view.exported:
        parts.append(f"exported as `{Path(view.exported).name}`")
    text = " · ".join(parts)
    if view.error:
        text += f"\n\n```\n{view.error}\n```"
    return text


def loss_frame(run: Path) -> pd.DataFrame:
    # explicit dtypes: an empty frame would be typed 'object', and the plot would keep a categorical axis
    return pd.DataFrame(jobs.metrics(run), columns=["step", "loss"]).astype({"step": "int64", "loss": "float64"})


def read_preview(path: Path) -> np.ndarray | None:
    """The preview PNG in memory (serving files from the runs folder would expose its checkpoints
    too), or None while it cannot be read (being written, already replaced)."""
    try:
        with Image.open(path) as im:
            return np.asarray(im)
    except (OSError, SyntaxError, ValueError):  # PIL's errors for a missing, truncated or broken file
        return None


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


@dataclass
class LiveTick:
    """One tick of the live view; None: unchanged since the last tick (left out of the update)."""

    job: str
    plot: pd.DataFrame | None
    picture: np.ndarray | None
    log: str
    models: list[str] | None  # the checkpoint list, when it changed
    seen: dict


def live_update(ctx: StudioContext, seen: dict) -> LiveTick:
    """The Train tab's live view for one tick; `seen` remembers the model list, the preview shown and
    the size of metrics.jsonl plotted, so what has not changed is not sent again."""
    view = ctx.jobs.view()
    names = ctx.model_names()
    models = names if names != seen["models"] else None
    if view is None:
        return LiveTick(job_markdown(None), None, None, "", models, {**seen, "models": names})
    run = Path(view.run)
    metrics_key = [str(run), _size(run / "metrics.jsonl")]  # appending always grows the file
    plot = loss_frame(run) if metrics_key != seen.get("metrics") else None
    shot, shown = jobs.latest_preview(run), seen["preview"]
    picture = None
    if shot and str(shot) != shown:
        picture = read_preview(shot)
        if picture is not None:  # otherwise keep the previous view, and try again next tick
            shown = str(shot)
    return LiveTick(job_markdown(view), plot, picture, jobs.log_tail(run), models,
                    {"models": names, "preview": shown, "metrics": metrics_key})


def wire(ctx: StudioContext, ui: TrainUI, model_dropdown: gr.Dropdown) -> None:
    """`model_dropdown`: the Synthesize tab's model list, which an exported model joins."""
    _wire_dataset(ctx, ui)
    _wire_job(ctx, ui)
    _wire_live(ctx, ui, model_dropdown)


def _wire_dataset(ctx: StudioContext, ui: TrainUI) -> None:
    cfg = ctx.config

    def base_classes(name: str) -> ClassSet | None:
        return None if name == SCRATCH else ClassSet(tuple(ctx.models.info(name).config().classes))

    @warned
    def on_zip(file):
        path = check_upload(file, cfg.max_upload_bytes)
        dest = cfg.uploads / f"{Path(path).stem[:40]}-{uuid.uuid4().hex[:8]}"
        return str(extract_zip(path, dest, cfg.max_upload_bytes))

    ui.data_zip.upload(on_zip, ui.data_zip, ui.data_path)

    @warned
    def on_validate(folder, fmt_name, base_name, progress=gr.Progress()):  # noqa: B008
        path = confine(folder, cfg.dataset_roots, "dataset folder")
        result = validate_dataset(path, fmt_name, progress=lambda i, total: progress((i, total), desc="reading"))
        return {ui.report: result.report.to_markdown(), ui.tiles: result.examples,
                ui.data_classes: list(result.classes.names),
                ui.mapping: mapping_text(base_classes(base_name), result.classes)}

    ui.validate_btn.click(on_validate, [ui.data_path, ui.fmt, ui.base],
                          [ui.report, ui.tiles, ui.data_classes, ui.mapping])

    @warned
    def on_base(name, classes):
        return mapping_text(base_classes(name), ClassSet(tuple(classes))) if classes else ""

    ui.base.input(on_base, [ui.base, ui.data_classes], ui.mapping)


def _wire_job(ctx: StudioContext, ui: TrainUI) -> None:
    cfg = ctx.config

    @warned
    def on_start(folder, fmt_name, base_name, run, export, n_steps, n_batch, rate, crop_px, extra):
        try:
            more = json.loads(extra or "{}")
        except json.JSONDecodeError as e:
            raise gr.Error(f"More TrainConfig options: not valid JSON ({e})") from None
        if not isinstance(more, dict):
            raise gr.Error("More TrainConfig options: give a JSON object, e.g. {\"save_every\": 100}")
        path = confine(folder, cfg.dataset_roots, "dataset folder")
        if more.get("text_cache"):  # the one path among the options: confined like the dataset
            more["text_cache"] = str(confine(more["text_cache"], cfg.dataset_roots, "text_cache"))
        init = None if base_name == SCRATCH else str(ctx.models.info(base_name).path)
        spec = JobSpec(run, str(path), fmt_name, init, n_steps, n_batch, rate, crop_px, export, more)
        return job_markdown(ctx.jobs.start(spec))

    ui.start_btn.click(on_start, [ui.data_path, ui.fmt, ui.base, ui.run_name, ui.export_name, ui.steps, ui.batch,
                                  ui.lr, ui.crop, ui.options], ui.job_md)
    ui.stop_btn.click(warned(lambda: job_markdown(ctx.jobs.stop())), None, ui.job_md)
    ui.resume_btn.click(warned(lambda n_steps: job_markdown(ctx.jobs.resume(int(n_steps)))), ui.steps, ui.job_md)

    @warned
    def on_export(name):
        out = ctx.jobs.export(name or None)
        gr.Info(f"exported {out.name}: pick it in the Synthesize tab's model list")
        return job_markdown(ctx.jobs.view())

    ui.export_btn.click(on_export, ui.export_name, ui.job_md)


def _wire_live(ctx: StudioContext, ui: TrainUI, model_dropdown: gr.Dropdown) -> None:
    def on_tick(seen: dict) -> Updates:
        tick = live_update(ctx, seen)
        out: Updates = {ui.job_md: tick.job, ui.log: tick.log, ui.seen_state: tick.seen}
        if tick.plot is not None:
            out[ui.loss_plot] = tick.plot
        if tick.picture is not None:
            out[ui.preview] = tick.picture
        if tick.models is not None:
            out[model_dropdown] = gr.Dropdown(choices=tick.models)
            out[ui.base] = gr.Dropdown(choices=[SCRATCH, *tick.models])
        return out

    timer = gr.Timer(POLL_S)
    live = [ui.job_md, ui.loss_plot, ui.preview, ui.log, model_dropdown, ui.base, ui.seen_state]
    timer.tick(on_tick, ui.seen_state, live, show_progress="hidden", concurrency_limit=None)
