"""The Train tab: dataset check, base model, hyperparameters, and the live view of the one job.

Wiring only: the job itself is jobs.JobManager's, the dataset check datasets.validate_dataset's.
A timer reads the job's files every few seconds while the page is open; nothing here keeps
state the job needs, so closing the tab changes nothing.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image

from cosyn.core.classes import ClassSet
from cosyn.data.formats import FORMATS
from cosyn.studio import jobs
from cosyn.studio.context import StudioContext
from cosyn.studio.datasets import mapping_text, validate_dataset
from cosyn.studio.errors import readable
from cosyn.studio.jobs import JobSpec, JobView
from cosyn.studio.paths import check_upload, confine, extract_zip

SCRATCH = "scratch (new model)"
POLL_S = 2.0


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


def live_update(ctx: StudioContext, seen: dict) -> tuple:
    """The Train tab's outputs for one tick, skipping what has not changed since the last one;
    `seen` remembers the model list, the preview shown and the size of metrics.jsonl plotted."""
    view = ctx.jobs.view()
    names = ctx.model_names()
    new_models = names != seen["models"]
    models = gr.Dropdown(choices=names) if new_models else gr.skip()
    bases = gr.Dropdown(choices=[SCRATCH, *names]) if new_models else gr.skip()
    if view is None:
        return job_markdown(None), gr.skip(), gr.skip(), "", models, bases, {**seen, "models": names}
    run = Path(view.run)
    metrics_key = [str(run), _size(run / "metrics.jsonl")]  # appending always grows the file
    plot = loss_frame(run) if metrics_key != seen.get("metrics") else gr.skip()
    shot, shown = jobs.latest_preview(run), seen["preview"]
    picture = gr.skip()
    if shot and str(shot) != shown:
        pixels = read_preview(shot)
        if pixels is not None:  # otherwise keep the previous view, and try again next tick
            picture, shown = pixels, str(shot)
    return (job_markdown(view), plot, picture, jobs.log_tail(run), models, bases,
            {"models": names, "preview": shown, "metrics": metrics_key})


def build(ctx: StudioContext, model_dropdown: gr.Dropdown) -> None:
    cfg = ctx.config
    seen_state = gr.State({"models": ctx.model_names(), "preview": None, "metrics": None})
    data_classes = gr.State(None)

    job_md = gr.Markdown(job_markdown(ctx.jobs.view()), elem_id="cosyn-job")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            roots = ", ".join(str(r) for r in cfg.data_roots) or "none configured (--data-root)"
            data_path = gr.Textbox(label="Dataset folder on the server", info=f"inside: {roots}",
                                   elem_id="cosyn-train-data")
            data_zip = gr.File(label=f"…or upload a zipped dataset (≤ {cfg.max_upload_mb:g} MB)", file_types=[".zip"],
                               height=120)
            with gr.Row():
                fmt = gr.Dropdown(["auto", *FORMATS], value="auto", label="Format")
                validate_btn = gr.Button("Validate", elem_id="cosyn-validate")
            base = gr.Dropdown([SCRATCH, *ctx.model_names()], value=SCRATCH, label="Base model",
                               elem_id="cosyn-base")
            mapping = gr.Markdown("")
            with gr.Row():
                run_name = gr.Textbox(time.strftime("run-%Y%m%d-%H%M"), label="Run name", elem_id="cosyn-run-name")
                export_name = gr.Textbox("", label="Export as (default: run name)", elem_id="cosyn-export-name")
            with gr.Row():
                steps = gr.Number(2000, precision=0, minimum=1, label="Steps", elem_id="cosyn-steps",
                                  info="total; Resume trains up to it")
                batch = gr.Number(8, precision=0, minimum=1, label="Batch", elem_id="cosyn-batch")
                lr = gr.Number(5e-4, label="Learning rate")
                crop = gr.Number(64, precision=0, minimum=16, label="Crop (px)", elem_id="cosyn-crop")
            with gr.Accordion("More TrainConfig options", open=False):
                options = gr.Code("{}", language="json", elem_id="cosyn-train-options",
                                  label="JSON, see cosyn/train.py; the fields above win")
            with gr.Row():
                start_btn = gr.Button("Start", variant="primary", elem_id="cosyn-train-start")
                stop_btn = gr.Button("Stop (saves)", variant="stop", elem_id="cosyn-train-stop")
            with gr.Row():
                resume_btn = gr.Button("Resume", elem_id="cosyn-train-resume")
                export_btn = gr.Button("Export now", elem_id="cosyn-train-export")
        with gr.Column(scale=3):
            loss_plot = gr.LinePlot(x="step", y="loss", title="Training loss", height=260)
            preview = gr.Image(label="Latest preview (real | generated | label | instances)", format="png",
                               buttons=["download", "fullscreen"], interactive=False)
            log = gr.Textbox(label="Log", lines=10, max_lines=10, autoscroll=True, interactive=False)
            with gr.Accordion("Dataset report", open=True):
                report = gr.Markdown("*Validate a dataset to see its report here.*", elem_id="cosyn-report")
                tiles = gr.Gallery(label="Example tiles and their layouts", columns=4, height=200, format="png",
                                   fit_columns=False, buttons=["fullscreen"])

    # -- dataset -----------------------------------------------------------------------------------
    def _base_classes(name: str) -> ClassSet | None:
        return None if name == SCRATCH else ClassSet(tuple(ctx.models.info(name).config().classes))

    @readable
    def on_zip(file):
        path = check_upload(file, cfg.max_upload_bytes)
        dest = cfg.uploads / f"{Path(path).stem[:40]}-{uuid.uuid4().hex[:8]}"
        return str(extract_zip(path, dest, cfg.max_upload_bytes))

    data_zip.upload(on_zip, data_zip, data_path)

    @readable
    def on_validate(folder, fmt_name, base_name, progress=gr.Progress()):  # noqa: B008
        path = confine(folder, cfg.dataset_roots, "dataset folder")
        result = validate_dataset(path, fmt_name, progress=lambda i, total: progress((i, total), desc="reading"))
        return (result.report.to_markdown(), result.examples, list(result.classes.names),
                mapping_text(_base_classes(base_name), result.classes))

    validate_btn.click(on_validate, [data_path, fmt, base], [report, tiles, data_classes, mapping])

    @readable
    def on_base(name, classes):
        return mapping_text(_base_classes(name), ClassSet(tuple(classes))) if classes else ""

    base.input(on_base, [base, data_classes], mapping)

    # -- the job ------------------------------------------------------------------------------------
    @readable
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

    start_btn.click(on_start, [data_path, fmt, base, run_name, export_name, steps, batch, lr, crop, options], job_md)
    stop_btn.click(readable(lambda: job_markdown(ctx.jobs.stop())), None, job_md)
    resume_btn.click(readable(lambda n_steps: job_markdown(ctx.jobs.resume(int(n_steps)))), steps, job_md)

    @readable
    def on_export(name):
        out = ctx.jobs.export(name or None)
        gr.Info(f"exported {out.name}: pick it in the Synthesize tab's model list")
        return job_markdown(ctx.jobs.view())

    export_btn.click(on_export, export_name, job_md)

    # -- live view ------------------------------------------------------------------------------------
    def on_tick(seen):
        return live_update(ctx, seen)

    timer = gr.Timer(POLL_S)
    live = [job_md, loss_plot, preview, log, model_dropdown, base, seen_state]
    timer.tick(on_tick, seen_state, live, show_progress="hidden", concurrency_limit=None)
