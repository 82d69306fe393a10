"""Synthesize tab wiring: canvas editing, layout sources, and the model choice.

Every handler here ends in `show`, which redraws everything that depends on the canvas
(picture, counts, JSON, and the prompt while it follows the layout), so no two views of the
layout can disagree. Handlers return {component: value}, so none depends on the order of an
outputs list.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
import numpy as np
from PIL import Image

from cosyn.core.classes import ClassSet
from cosyn.core.layout import Layout
from cosyn.data.targets import layout_from_sample, structure_prompt
from cosyn.studio import canvas as cv
from cosyn.studio import sources
from cosyn.studio.context import StudioContext
from cosyn.studio.errors import notified
from cosyn.studio.gallery import session_dir
from cosyn.studio.models import ModelView, model_view, unverified_warning
from cosyn.studio.paths import confine
from cosyn.studio.random_layout import random_layout_of_density, requested_count
from cosyn.studio.real_tile import keep_tile, uploaded_tile
from cosyn.studio.synthesize_tab import LAST_IMAGE, MAX_MIX, NEUTRAL, REAL_TILE, SynthesizeUI, Updates

QUIET = {"show_progress": "hidden"}  # canvas edits are instant: no spinner flicker
warned = notified()  # a refusal is a warning toast; the canvas and its views stay as they were


@dataclass
class CanvasView:
    """Everything drawn from the canvas (SynthesizeUI.canvas_outputs, by name)."""

    canvas: cv.Canvas
    picture: np.ndarray
    legend: str
    layout_json: str
    prompt: str

    def updates(self, ui: SynthesizeUI) -> Updates:
        return {ui.canvas_state: self.canvas, ui.canvas_img: self.picture, ui.legend: self.legend,
                ui.layout_json: self.layout_json, ui.prompt: self.prompt}


def show(canvas: cv.Canvas, background: str, last_image: str | None, edit_source: dict | None, auto_prompt: bool,
         prompt: str) -> CanvasView:
    """The views of `canvas`; the arguments after it are SynthesizeUI.view_inputs."""
    layout = cv.layout_of(canvas)
    picture = {LAST_IMAGE: last_image, REAL_TILE: (edit_source or {}).get("image")}.get(background)
    back = np.asarray(Image.open(picture).convert("RGB")) if picture else None
    # a layout that brings its own prompt keeps it, as in the CLI and the API
    text = (layout.prompt or structure_prompt(layout)) if auto_prompt else prompt
    return CanvasView(canvas, cv.render(layout, back), cv.legend_html(layout), layout.to_json(), text)


def fitted_to(layout: Layout, mv: ModelView) -> Layout:
    """The layout in the model's classes and canvas limit, with a warning for each thing lost."""
    if layout.mpp is None:  # made explicit, so the µm grid, the size readout and the prompt's density agree
        layout = dataclasses.replace(layout, mpp=mv.mpp)
    fitted, notes = sources.fit(layout, mv.classes, mv.side_limit)
    for note in notes:
        gr.Warning(note)
    return fitted


def wire(ctx: StudioContext, demo: gr.Blocks, ui: SynthesizeUI) -> None:
    _wire_editing(ui)
    _wire_sources(ctx, ui)
    _wire_model(ctx, demo, ui)


def _wire_editing(ui: SynthesizeUI) -> None:
    view, out = ui.view_inputs, ui.canvas_outputs

    def shown(canvas: cv.Canvas, *view_values) -> Updates:
        return show(canvas, *view_values).updates(ui)

    @warned
    def on_click(canvas, cls, bg, last, tile, auto, text, evt: gr.SelectData):  # explicit: Gradio finds `evt`
        layout = cv.layout_of(canvas)  # by its place among named parameters
        zoom = cv.display_zoom(layout.width, layout.height)
        x, y = cv.to_layout(evt.index[0], evt.index[1], zoom, layout.width, layout.height)
        return shown(cv.click(canvas, x, y, cls, cv.hit_radius(zoom)), bg, last, tile, auto, text)

    # "multiple": quick successive clicks all count, in order
    ui.canvas_img.select(on_click, [ui.canvas_state, ui.cls_radio, *view], out, trigger_mode="multiple", **QUIET)
    for btn, edit in ((ui.undo_btn, cv.undo), (ui.redo_btn, cv.redo), (ui.clear_btn, cv.clear)):
        btn.click(warned(lambda canvas, *v, edit=edit: shown(edit(canvas), *v)), [ui.canvas_state, *view], out,
                  **QUIET)
    for toggle in (ui.background, ui.auto_prompt):  # .input: not when a handler sets them (typing would race)
        toggle.input(warned(shown), [ui.canvas_state, *view], out, **QUIET)
    ui.prompt.input(lambda: False, None, ui.auto_prompt, **QUIET)  # typing takes the prompt over
    ui.preset.input(lambda name: {ui.prompt: sources.presets()[name], ui.auto_prompt: False}, ui.preset,
                    [ui.prompt, ui.auto_prompt])

    @warned
    def on_size(canvas, side, *v):
        layout, cut = cv.resized(cv.layout_of(canvas), int(side), int(side))
        if cut:
            gr.Warning(f"{cut} points fell outside the smaller canvas and were removed (Undo brings them back)")
        return shown(cv.replace(canvas, layout), *v)

    # keys that step the slider send `release` too (ui.SIZE_KEYS_JS): typing into its box resizes on Enter or
    # when the box loses focus, not at each digit (typing 640 would first cut the canvas to 64)
    ui.size.release(on_size, [ui.canvas_state, ui.size, *view], out, trigger_mode="always_last")

    @warned
    def on_tissue(canvas, name, *v):
        layout = cv.layout_of(canvas)
        layout.tissue = name
        return shown(cv.replace(canvas, layout), *v)

    ui.tissue.input(on_tissue, [ui.canvas_state, ui.tissue, *view], out)


Replaced = Callable[..., Updates]


def _wire_sources(ctx: StudioContext, ui: SynthesizeUI) -> None:
    def replaced(canvas: cv.Canvas, layout: Layout, model: str | None, *view_values) -> Updates:
        """Show a layout from elsewhere, fitted to the model's classes and canvas limit."""
        fitted = fitted_to(layout, model_view(ctx.models, model, layout.mpp))
        return show(cv.replace(canvas, fitted), *view_values).updates(ui)

    def unrelated(canvas: cv.Canvas, layout: Layout, model: str | None, background: str, last_image: str | None,
                  _edit_source: dict | None, auto_prompt: bool, prompt: str) -> Updates:
        """Show a layout that is not the loaded real tile's (a random one, an example, an upload, pasted JSON)
        without that tile: drawn over it, stretched to another size, it would look like its layout, and Edit
        would regenerate the tile from it. The arguments after `model` are view_inputs."""
        background = NEUTRAL if background == REAL_TILE else background
        return {**replaced(canvas, layout, model, background, last_image, None, auto_prompt, prompt),
                ui.background: background, ui.edit_source: None, ui.edit_mode: False}

    _wire_made_layouts(ctx, ui, unrelated)
    _wire_loaded_layouts(ctx, ui, replaced, unrelated)


def _wire_made_layouts(ctx: StudioContext, ui: SynthesizeUI, unrelated: Replaced) -> None:
    """Random layouts and the shipped examples."""
    cfg = ctx.config
    view, out = ui.view_inputs, [*ui.canvas_outputs, *ui.tile_outputs]

    @warned
    def on_random(canvas, model, density, *rest):
        weights, v = rest[:MAX_MIX], rest[MAX_MIX:]
        current = cv.layout_of(canvas)
        mpp = current.mpp or cfg.canvas_mpp
        classes = model_view(ctx.models, model, mpp).classes
        mix = dict(zip(classes[1:], weights, strict=False))  # sliders beyond the class count are hidden
        layout = random_layout_of_density(current.width, current.height, mpp, classes, float(density), mix,
                               seed=random.randrange(2**31), tissue=current.tissue)
        wanted = requested_count(current.width, current.height, mpp, float(density))
        if len(layout.points) < wanted:
            gr.Warning(f"placed {len(layout.points)} of {wanted} nuclei: the canvas is full at this spacing")
        return unrelated(canvas, layout, model, *v)

    ui.random_btn.click(on_random, [ui.canvas_state, ui.model_dd, ui.density, *ui.mix, *view], out)

    @warned
    def on_example(canvas, name, model, *v):
        path = sources.example_layouts().get(name)
        if path is None:
            raise gr.Error("Choose an example layout first.")
        return unrelated(canvas, Layout.load(path), model, *v)

    ui.example_btn.click(on_example, [ui.canvas_state, ui.example_dd, ui.model_dd, *view], out)


def _wire_loaded_layouts(ctx: StudioContext, ui: SynthesizeUI, replaced: Replaced, unrelated: Replaced) -> None:
    """Layouts from a dataset sample (kept as the tile to edit), an upload or pasted JSON; the download."""
    cfg = ctx.config
    view, out = ui.view_inputs, ui.canvas_outputs

    def editing(canvas, tile, model, _background, last_image, _edit_source, auto_prompt, prompt, browser):
        """The tile's layout on the canvas over its real image, the tile kept to be edited, and the brush
        editor showing it (the arguments after `model`: view_inputs, then the browser id; the background
        and the loaded tile are the ones this sets)."""
        source = keep_tile(tile, session_dir(cfg.outputs, browser))
        view = replaced(canvas, layout_from_sample(tile), model, REAL_TILE, last_image, source, auto_prompt, prompt)
        return {**view, ui.edit_source: source, ui.background: REAL_TILE,
                ui.brush: {"background": source["image"], "layers": [], "composite": None}}

    tile_outputs = [*out, ui.edit_source, ui.background, ui.brush]

    @warned
    def on_dataset(canvas, folder, index, model, *v):
        tile = sources.dataset_tile(confine(folder, cfg.dataset_roots, "dataset folder"), int(index or 0))
        return editing(canvas, tile, model, *v)

    ui.ds_btn.click(on_dataset, [ui.canvas_state, ui.ds_path, ui.ds_index, ui.model_dd, *view, ui.browser_id],
                    tile_outputs)

    @warned
    def on_tile(canvas, image, annotation, model, *v):
        current = cv.layout_of(canvas)
        tile = uploaded_tile(image, annotation, current, ClassSet(tuple(current.classes)), cfg.max_upload_bytes)
        return editing(canvas, tile, model, *v)

    ui.tile_btn.click(on_tile, [ui.canvas_state, ui.tile_image, ui.tile_annotation, ui.model_dd, *view,
                                ui.browser_id], tile_outputs)

    @warned
    def on_upload(canvas, file, cls, model, *v):
        layout = sources.uploaded_layout(file, cv.layout_of(canvas), cls, cfg.max_upload_bytes)
        return unrelated(canvas, layout, model, *v)

    ui.upload.upload(on_upload, [ui.canvas_state, ui.upload, ui.cls_radio, ui.model_dd, *view],
                     [*out, *ui.tile_outputs])

    @warned
    def on_json(canvas, text, model, *v):
        return unrelated(canvas, sources.pasted_layout(text, cfg.max_upload_bytes, "layout JSON"), model, *v)

    ui.json_btn.click(on_json, [ui.canvas_state, ui.layout_json, ui.model_dd, *view], [*out, *ui.tile_outputs])

    @warned
    def on_download(canvas, fmt, browser):
        folder = session_dir(cfg.outputs, browser) / "layouts"
        return str(sources.layout_file(cv.layout_of(canvas), fmt, folder))

    ui.dl_btn.click(on_download, [ui.canvas_state, ui.dl_format, ui.browser_id], ui.dl_file)


def ready_line(ctx: StudioContext, name: str | None) -> str:
    """The status line for the chosen model, with a warning (also a toast) for one without a checksum."""
    if not name:
        return "Ready (no model: layouts only)."
    warning = unverified_warning(ctx.models.info(name), ctx.config.trust_unverified)
    if warning:
        gr.Warning(warning, title="Unverified checkpoint")
    return f"Ready: model `{name}`." + (f" {warning}" if warning else "")


def _wire_model(ctx: StudioContext, demo: gr.Blocks, ui: SynthesizeUI) -> None:
    """The model choice: palette, tissues and canvas limit follow it."""
    outputs = [ui.model_dd, ui.notice, ui.card, ui.cls_radio, ui.tissue, ui.size, *ui.mix, ui.status,
               *ui.canvas_outputs]

    @warned
    def on_model(name, canvas, *v):
        listed = ctx.model_names()
        name = name if name in listed else (listed[0] if listed else None)
        layout = cv.layout_of(canvas)
        mv = model_view(ctx.models, name, layout.mpp)
        fitted = fitted_to(layout, mv)
        if fitted.tissue not in mv.tissues:
            fitted.tissue = mv.tissues[0]
        nuclei = mv.classes[1:]
        mix = (gr.Slider(label=c or " ", visible=bool(c)) for c in (nuclei + [""] * MAX_MIX)[:MAX_MIX])
        return {
            ui.model_dd: gr.Dropdown(choices=listed, value=name),
            ui.notice: gr.Markdown(visible=name is None),
            ui.card: ctx.models.info(name).card if name else "",
            ui.cls_radio: gr.Radio(choices=nuclei, value=nuclei[0]),
            ui.tissue: gr.Dropdown(choices=mv.tissues, value=fitted.tissue),
            ui.size: gr.Slider(maximum=mv.side_limit, value=min(max(fitted.width, fitted.height), mv.side_limit)),
            **dict(zip(ui.mix, mix, strict=True)),
            ui.status: ready_line(ctx, name),
            **show(cv.replace(canvas, fitted), *v).updates(ui),
        }

    inputs = [ui.model_dd, ui.canvas_state, *ui.view_inputs]
    ui.model_dd.input(on_model, inputs, outputs)
    ui.refresh_btn.click(on_model, inputs, outputs)
    demo.load(on_model, inputs, outputs)  # also restores the canvas kept in the browser
