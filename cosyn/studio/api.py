"""The `/generate` endpoint for gradio_client: layout JSON + prompt + settings → zip of bundles.

Gradio's File output is what makes gradio_client download the result, so the endpoint is a
hidden event over hidden components rather than a bare gr.api function. See docs/studio.md.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import gradio as gr

from cosyn.io.export import json_safe
from cosyn.model.diffusion.gaussian import SAMPLERS
from cosyn.model.settings import SamplingSettings
from cosyn.studio import gallery
from cosyn.studio.context import SAMPLING_GROUP, StudioContext
from cosyn.studio.errors import readable
from cosyn.studio.sampling import Request
from cosyn.studio.sources import pasted_layout
from cosyn.studio.views import missed_line, stages_line

API_NAME = "generate"
KEEP_S = 3600.0  # an API result is downloaded right away (Gradio serves its own copy): keep it an hour


def prune(folder: Path, keep_s: float = KEEP_S) -> None:
    """Delete the result folders under `folder` last written more than `keep_s` seconds ago."""
    if not folder.is_dir():
        return
    cutoff = time.time() - keep_s
    for old in folder.iterdir():
        if old.is_dir() and old.stat().st_mtime < cutoff:
            shutil.rmtree(old, ignore_errors=True)


def build(ctx: StudioContext) -> None:
    cfg = ctx.config
    default_model = (ctx.model_names() or [cfg.default_checkpoint])[0]
    with gr.Column(visible=False):
        inputs = [
            gr.Textbox(label="layout_json"),
            gr.Textbox("", label="prompt"),
            # no `precision`: Gradio would round 2.5 to 2 before SamplingSettings could refuse it
            gr.Number(25, label="steps"),
            gr.Number(2.0, label="guidance"),
            gr.Dropdown(sorted(SAMPLERS), value="dpm++", label="sampler"),
            gr.Number(0, label="seed"),
            gr.Number(1, label="n"),
            gr.Textbox(default_model, label="checkpoint"),
            gr.Checkbox(True, label="refine"),  # last: clients that pass arguments by position keep working
        ]
        outputs = [gr.File(label="bundles_zip"), gr.JSON(label="summary")]
        trigger = gr.Button()

    @readable
    def generate(layout_json: str, prompt: str, steps: float, guidance: float, sampler: str, seed: float,
                 n: float, checkpoint: str, refine: bool = True) -> tuple[str, dict[str, Any]]:
        """Sample `n` triples for the layout; returns a zip of their export bundles and a summary."""
        prune(cfg.outputs / "api")
        settings = SamplingSettings(steps, guidance, sampler, seed, n, refine)
        layout = pasted_layout(layout_json, cfg.max_upload_bytes, "layout_json")
        # the canvas is bounded by the checkpoint's max_canvas: conforming refuses a larger one, saying so
        name = checkpoint or default_model
        req = Request(ctx.models.get(name), layout, prompt, settings)  # at most MAX_N triples of MAX_STEPS steps
        folder = cfg.outputs / "api" / uuid.uuid4().hex
        # nothing cancels an API call once it runs: its flag is never set
        *_, saved = req.run(threading.Event(), folder, first_index=1, checkpoint=name)
        summary = {"bundles": [Path(e["dir"]).name for e in saved.entries],
                   "missed": [missed_line(t.params) for t in saved.triples],
                   "stages": [stages_line(t) for t in saved.triples],
                   "params": [json_safe(t.params) for t in saved.triples]}
        return str(gallery.export_zip(saved.entries, folder)), summary

    trigger.click(generate, inputs, outputs, api_name=API_NAME, concurrency_id=SAMPLING_GROUP, concurrency_limit=1)
