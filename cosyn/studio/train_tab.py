"""The Train tab's page: dataset check, base model, hyperparameters, and the live view of the one job.

This module only places components; train_events wires them (ui.build_app calls both), as
synthesize_tab and its canvas_events / generate_events do for the Synthesize tab.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import gradio as gr

from cosyn.data.formats import FORMATS
from cosyn.studio.context import StudioContext

SCRATCH = "scratch (new model)"


@dataclass
class TrainUI:
    """The tab's components, handed to train_events."""

    seen_state: gr.State  # what the live view last showed (see train_events.live_update)
    data_classes: gr.State  # class names of the validated dataset
    job_md: gr.Markdown
    data_path: gr.Textbox
    data_zip: gr.File
    fmt: gr.Dropdown
    validate_btn: gr.Button
    base: gr.Dropdown
    mapping: gr.Markdown
    run_name: gr.Textbox
    export_name: gr.Textbox
    steps: gr.Number
    batch: gr.Number
    lr: gr.Number
    crop: gr.Number
    options: gr.Code
    start_btn: gr.Button
    stop_btn: gr.Button
    resume_btn: gr.Button
    export_btn: gr.Button
    loss_plot: gr.LinePlot
    preview: gr.Image
    log: gr.Textbox
    report: gr.Markdown
    tiles: gr.Gallery


def build(ctx: StudioContext, first_view: str) -> TrainUI:
    """Place the tab's components inside the open Blocks; `first_view` is the job line to start with."""
    c: dict = {"seen_state": gr.State({"models": ctx.model_names(), "preview": None, "metrics": None}),
               "data_classes": gr.State(None), "job_md": gr.Markdown(first_view, elem_id="cosyn-job")}
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            _job_settings(ctx, c)
        with gr.Column(scale=3):
            c["loss_plot"] = gr.LinePlot(x="step", y="loss", title="Training loss", height=260)
            c["preview"] = gr.Image(label="Latest preview (real | generated | label | instances)", format="png",
                                    buttons=["download", "fullscreen"], interactive=False)
            c["log"] = gr.Textbox(label="Log", lines=10, max_lines=10, autoscroll=True, interactive=False)
            with gr.Accordion("Dataset report", open=True):
                c["report"] = gr.Markdown("*Validate a dataset to see its report here.*", elem_id="cosyn-report")
                c["tiles"] = gr.Gallery(label="Example tiles and their layouts", columns=4, height=200, format="png",
                                        fit_columns=False, buttons=["fullscreen"])
    return TrainUI(**c)


def _job_settings(ctx: StudioContext, c: dict) -> None:
    cfg = ctx.config
    roots = ", ".join(str(r) for r in cfg.data_roots) or "none configured (--data-root)"
    c["data_path"] = gr.Textbox(label="Dataset folder on the server", info=f"inside: {roots}",
                                elem_id="cosyn-train-data")
    c["data_zip"] = gr.File(label=f"…or upload a zipped dataset (≤ {cfg.max_upload_mb:g} MB)", file_types=[".zip"],
                            height=120)
    with gr.Row():
        c["fmt"] = gr.Dropdown(["auto", *FORMATS], value="auto", label="Format")
        c["validate_btn"] = gr.Button("Validate", elem_id="cosyn-validate")
    c["base"] = gr.Dropdown([SCRATCH, *ctx.model_names()], value=SCRATCH, label="Base model", elem_id="cosyn-base")
    c["mapping"] = gr.Markdown("")
    with gr.Row():
        c["run_name"] = gr.Textbox(time.strftime("run-%Y%m%d-%H%M"), label="Run name", elem_id="cosyn-run-name")
        c["export_name"] = gr.Textbox("", label="Export as (default: run name)", elem_id="cosyn-export-name")
    with gr.Row():
        c["steps"] = gr.Number(2000, precision=0, minimum=1, label="Steps", elem_id="cosyn-steps",
                               info="total; Resume trains up to it")
        c["batch"] = gr.Number(8, precision=0, minimum=1, label="Batch", elem_id="cosyn-batch")
        c["lr"] = gr.Number(5e-4, label="Learning rate")
        c["crop"] = gr.Number(64, precision=0, minimum=16, label="Crop (px)", elem_id="cosyn-crop")
    with gr.Accordion("More TrainConfig options", open=False):
        c["options"] = gr.Code("{}", language="json", elem_id="cosyn-train-options",
                               label="JSON, see cosyn/train.py; the fields above win")
    with gr.Row():
        c["start_btn"] = gr.Button("Start", variant="primary", elem_id="cosyn-train-start")
        c["stop_btn"] = gr.Button("Stop (saves)", variant="stop", elem_id="cosyn-train-stop")
    with gr.Row():
        c["resume_btn"] = gr.Button("Resume", elem_id="cosyn-train-resume")
        c["export_btn"] = gr.Button("Export now", elem_id="cosyn-train-export")
