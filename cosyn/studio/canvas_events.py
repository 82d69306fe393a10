"""Synthesize tab wiring: canvas editing, layout sources, and the model choice.

Every handler here ends in `show`, which redraws everything that depends on the canvas
(picture, counts, JSON, and the prompt while it follows the layout), so no two views of the
layout can disagree.
"""

from __future__ import annotations

import dataclasses
import random

import gradio as gr
import numpy as np
from PIL import Image

from cosyn.core.layout import Layout
from cosyn.data.targets import structure_prompt
from cosyn.studio import canvas as cv
from cosyn.studio import sources
from cosyn.studio.context import StudioContext
from cosyn.studio.errors import readable
from cosyn.studio.gallery import session_dir
from cosyn.studio.models import ModelView, model_view
from cosyn.studio.paths import confine
from cosyn.studio.random_layout import random_layout, requested_count
from cosyn.studio.synthesize_tab import LAST_IMAGE, MAX_MIX, SynthesizeUI

QUIET = {"show_progress": "hidden"}  # canvas edits are instant: no spinner flicker


def show(canvas: cv.Canvas, background: str, last_image: str | None, auto_prompt: bool, prompt: str) -> tuple:
    """Values for SynthesizeUI.canvas_outputs; the arguments after `canvas` are its view_inputs."""
    layout = cv.layout_of(canvas)
    back = np.asarray(Image.open(last_image).convert("RGB")) if background == LAST_IMAGE and last_image else None
    # a layout that brings its own prompt keeps it, as in the CLI and the API
    text = (layout.prompt or structure_prompt(layout)) if auto_prompt else prompt
    return canvas, cv.render(layout, back), cv.legend_html(layout), layout.to_json(), text


def fitted_to(layout: Layout, mv: ModelView) -> Layout:
    """The layout in the model's classes and canvas limit, with a warning for each thing lost."""
    if layout.mpp is None:  # made explicit, so the µm grid, the size readout and the prompt's density agree
        layout = dataclasses.replace(layout, mpp=mv.mpp)
    fitted, notes = sources.fit(layout, mv.classes, mv.side_limit)
    for note in notes:
        gr.Warning(note)
    return fitted


def wire(ctx: StudioContext, demo: gr.Blocks, ui: SynthesizeUI) -> None:
    cfg = ctx.config
    view, out = ui.view_inputs, ui.canvas_outputs

    def replaced(canvas: cv.Canvas, layout: Layout, model: str | None, *view_values) -> tuple:
        """Show a layout from elsewhere, fitted to the model's classes and canvas limit."""
        return show(cv.replace(canvas, fitted_to(layout, model_view(ctx.models, model, layout.mpp))), *view_values)

    # -- editing ---------------------------------------------------------------------------------------
    @readable
    def on_click(canvas, cls, bg, last, auto, text, evt: gr.SelectData):
        layout = cv.layout_of(canvas)
        zoom = cv.display_zoom(layout.width, layout.height)
        x, y = cv.to_layout(evt.index[0], evt.index[1], zoom, layout.width, layout.height)
        return show(cv.click(canvas, x, y, cls, cv.hit_radius(zoom)), bg, last, auto, text)

    # "multiple": quick successive clicks all count, in order
    ui.canvas_img.select(on_click, [ui.canvas_state, ui.cls_radio, *view], out, trigger_mode="multiple", **QUIET)
    for btn, edit in ((ui.undo_btn, cv.undo), (ui.redo_btn, cv.redo), (ui.clear_btn, cv.clear)):
        btn.click(readable(lambda canvas, *v, edit=edit: show(edit(canvas), *v)), [ui.canvas_state, *view], out,
                  **QUIET)
    for toggle in (ui.background, ui.auto_prompt):  # .input: not when a handler sets them (typing would race)
        toggle.input(readable(show), [ui.canvas_state, *view], out, **QUIET)
    ui.prompt.input(lambda: False, None, ui.auto_prompt, **QUIET)  # typing takes the prompt over
    ui.preset.input(lambda name: (sources.presets()[name], False), ui.preset, [ui.prompt, ui.auto_prompt])

    @readable
    def on_size(canvas, side, *v):
        layout, cut = cv.resized(cv.layout_of(canvas), int(side), int(side))
        if cut:
            gr.Warning(f"{cut} points fell outside the smaller canvas and were removed (Undo brings them back)")
        return show(cv.replace(canvas, layout), *v)

    ui.size.release(on_size, [ui.canvas_state, ui.size, *view], out)

    @readable
    def on_tissue(canvas, name, *v):
        layout = cv.layout_of(canvas)
        layout.tissue = name
        return show(cv.replace(canvas, layout), *v)

    ui.tissue.input(on_tissue, [ui.canvas_state, ui.tissue, *view], out)

    # -- sources ---------------------------------------------------------------------------------------
    @readable
    def on_random(canvas, model, density, *rest):
        weights, v = rest[:MAX_MIX], rest[MAX_MIX:]
        current = cv.layout_of(canvas)
        mpp = current.mpp or cfg.canvas_mpp
        classes = model_view(ctx.models, model, mpp).classes
        mix = dict(zip(classes[1:], weights, strict=False))  # sliders beyond the class count are hidden
        layout = random_layout(current.width, current.height, mpp, classes, float(density), mix,
                               seed=random.randrange(2**31), tissue=current.tissue)
        wanted = requested_count(current.width, current.height, mpp, float(density))
        if len(layout.points) < wanted:
            gr.Warning(f"placed {len(layout.points)} of {wanted} nuclei: the canvas is full at this spacing")
        return replaced(canvas, layout, model, *v)

    ui.random_btn.click(on_random, [ui.canvas_state, ui.model_dd, ui.density, *ui.mix, *view], out)

    @readable
    def on_example(canvas, name, model, *v):
        path = sources.example_layouts().get(name)
        if path is None:
            raise gr.Error("Choose an example layout first.")
        return replaced(canvas, Layout.load(path), model, *v)

    ui.example_btn.click(on_example, [ui.canvas_state, ui.example_dd, ui.model_dd, *view], out)

    @readable
    def on_dataset(canvas, folder, index, model, *v):
        path = confine(folder, cfg.dataset_roots, "dataset folder")
        return replaced(canvas, sources.dataset_sample(path, int(index or 0)), model, *v)

    ui.ds_btn.click(on_dataset, [ui.canvas_state, ui.ds_path, ui.ds_index, ui.model_dd, *view], out)

    @readable
    def on_upload(canvas, file, cls, model, *v):
        layout = sources.uploaded_layout(file, cv.layout_of(canvas), cls, cfg.max_upload_bytes)
        return replaced(canvas, layout, model, *v)

    ui.upload.upload(on_upload, [ui.canvas_state, ui.upload, ui.cls_radio, ui.model_dd, *view], out)

    @readable
    def on_json(canvas, text, model, *v):
        return replaced(canvas, sources.pasted_layout(text, cfg.max_upload_bytes, "layout JSON"), model, *v)

    ui.json_btn.click(on_json, [ui.canvas_state, ui.layout_json, ui.model_dd, *view], out)

    @readable
    def on_download(canvas, fmt, request: gr.Request):
        folder = session_dir(cfg.outputs, request.session_hash) / "layouts"
        return str(sources.layout_file(cv.layout_of(canvas), fmt, folder))

    ui.dl_btn.click(on_download, [ui.canvas_state, ui.dl_format], ui.dl_file)

    # -- the model: palette, tissues and canvas limit follow it ----------------------------------------
    model_outputs = [ui.model_dd, ui.notice, ui.card, ui.cls_radio, ui.tissue, ui.size, *ui.mix, ui.status]

    @readable
    def on_model(name, canvas, *v):
        listed = ctx.model_names()
        name = name if name in listed else (listed[0] if listed else None)
        layout = cv.layout_of(canvas)
        mv = model_view(ctx.models, name, layout.mpp)
        fitted = fitted_to(layout, mv)
        if fitted.tissue not in mv.tissues:
            fitted.tissue = mv.tissues[0]
        nuclei = mv.classes[1:]
        updates = (
            gr.Dropdown(choices=listed, value=name),
            gr.Markdown(visible=name is None),
            ctx.models.info(name).card if name else "",
            gr.Radio(choices=nuclei, value=nuclei[0]),
            gr.Dropdown(choices=mv.tissues, value=fitted.tissue),
            gr.Slider(maximum=mv.side_limit, value=min(max(fitted.width, fitted.height), mv.side_limit)),
            *(gr.Slider(label=c or " ", visible=bool(c)) for c in (nuclei + [""] * MAX_MIX)[:MAX_MIX]),
            f"Ready: model `{name}`." if name else "Ready (no model: layouts only).",
        )
        return *updates, *show(cv.replace(canvas, fitted), *v)

    inputs = [ui.model_dd, ui.canvas_state, *view]
    ui.model_dd.input(on_model, inputs, model_outputs + out)
    ui.refresh_btn.click(on_model, inputs, model_outputs + out)
    demo.load(on_model, inputs, model_outputs + out)  # also restores the canvas kept in the browser
