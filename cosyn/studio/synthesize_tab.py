"""The Synthesize tab's page: canvas, layout sources, prompt, settings, results, gallery.

This module only places components; canvas_events wires the layout editing and the model
choice, generate_events the sampling, gallery and export (ui.build_app calls all three).
Per-user state is plain data: the canvas dict in the browser's localStorage (so the layout
survives a reload), the gallery a list of bundle paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from cosyn.core.layout import Layout
from cosyn.data.targets import structure_prompt
from cosyn.model.diffusion.gaussian import SAMPLERS
from cosyn.studio import canvas as cv
from cosyn.studio import gallery, sources
from cosyn.studio.context import StudioContext
from cosyn.studio.models import ModelView, model_view, no_model_message
from cosyn.studio.sampling import MAX_N, MAX_STEPS

MAX_MIX = 10  # class-mix sliders on the page; a model with more nucleus classes gets the first ten
NEUTRAL, LAST_IMAGE, REAL_TILE = "neutral", "last generated image", "loaded real tile"
DOWNLOAD = ["download", "fullscreen"]  # no "share": results stay on this server
START_SIDE = 256
# what a handler returns: {component: new value}; Gradio leaves the event's other outputs as they are
Updates = dict[Any, Any]


@dataclass
class SynthesizeUI:
    """The tab's components, handed to the modules that wire them."""

    canvas_state: gr.BrowserState
    browser_id: gr.BrowserState  # names this browser's results folder (gallery.session_dir)
    last_image: gr.State  # path of the newest generated image, the canvas' optional background
    entries: gr.BrowserState  # this browser's gallery entries (gallery.Entry): they survive a reload
    shown: gr.State  # the entry in the result panels
    confirmed: gr.State  # the long request the user was warned about: Generate again starts it
    edit_source: gr.State  # the real tile to edit, kept by real_tile.keep_tile: {folder, name, image}
    notice: gr.Markdown
    canvas_img: gr.Image
    legend: gr.HTML
    cls_radio: gr.Radio
    undo_btn: gr.Button
    redo_btn: gr.Button
    clear_btn: gr.Button
    background: gr.Radio
    density: gr.Slider
    mix: list[gr.Slider]
    random_btn: gr.Button
    example_dd: gr.Dropdown
    example_btn: gr.Button
    ds_path: gr.Textbox
    ds_index: gr.Number
    ds_btn: gr.Button
    tile_image: gr.File
    tile_annotation: gr.File
    tile_btn: gr.Button
    upload: gr.File
    dl_format: gr.Dropdown
    dl_btn: gr.Button
    dl_file: gr.File
    layout_json: gr.Code
    json_btn: gr.Button
    model_dd: gr.Dropdown
    refresh_btn: gr.Button
    card: gr.Markdown
    tissue: gr.Dropdown
    size: gr.Slider
    prompt: gr.Textbox
    auto_prompt: gr.Checkbox
    preset: gr.Dropdown
    steps: gr.Slider
    guidance: gr.Slider
    sampler: gr.Dropdown
    n: gr.Slider
    refine: gr.Checkbox
    enrich: gr.Textbox
    stain_reference: gr.Image  # an H&E tile whose stain the results take (optional)
    edit_mode: gr.Checkbox
    brush: gr.ImageEditor  # the region to regenerate, painted over the loaded tile (optional)
    seed: gr.Number
    dice: gr.Button
    generate_btn: gr.Button
    cancel_btn: gr.Button
    status: gr.Markdown
    results: list[gr.Image]  # image, label overlay, instance contours, distance map
    missed: gr.Markdown
    opacity: gr.Slider
    gallery_view: gr.Gallery
    export_sel: gr.Button
    export_all: gr.Button
    clear_results: gr.Button
    export_file: gr.File

    @property
    def view_inputs(self) -> list[gr.components.Component]:
        """What drawing the canvas depends on besides the canvas itself (see canvas_events.show)."""
        return [self.background, self.last_image, self.edit_source, self.auto_prompt, self.prompt]

    @property
    def canvas_outputs(self) -> list[gr.components.Component]:
        return [self.canvas_state, self.canvas_img, self.legend, self.layout_json, self.prompt]

    @property
    def tile_outputs(self) -> list[gr.components.Component]:
        """What a layout unrelated to the loaded real tile resets (canvas_events.unrelated)."""
        return [self.background, self.edit_source, self.edit_mode]


def build(ctx: StudioContext) -> SynthesizeUI:
    """Place the tab's components inside the open Blocks."""
    cfg = ctx.config
    names = ctx.model_names()
    first = names[0] if names else None
    mv = model_view(ctx.models, first, cfg.canvas_mpp)
    start = Layout(START_SIDE, START_SIDE, mv.classes, [], cfg.canvas_mpp,
                   "colon" if "colon" in mv.tissues else mv.tissues[0])
    nuclei = mv.classes[1:]
    c: dict = {
        "canvas_state": gr.BrowserState(cv.new_canvas(start), storage_key="cosyn-studio-canvas"),
        "browser_id": gr.BrowserState("", storage_key="cosyn-studio-browser"),
        "entries": gr.BrowserState([], storage_key="cosyn-studio-results"),
        "last_image": gr.State(None), "shown": gr.State(None), "confirmed": gr.State(None),
        "edit_source": gr.State(None),
        "notice": gr.Markdown(no_model_message(cfg.checkpoints), visible=first is None, elem_id="cosyn-notice"),
    }
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            c["canvas_img"] = gr.Image(cv.render(start), interactive=False, format="png", elem_id="cosyn-canvas",
                                       label="Layout: click to add a nucleus, click a nucleus to remove it",
                                       buttons=["fullscreen"])
            c["legend"] = gr.HTML(cv.legend_html(start), elem_id="cosyn-legend")
            c["cls_radio"] = gr.Radio(nuclei, value=nuclei[0], label="Class to place", elem_id="cosyn-class")
            with gr.Row():
                c["undo_btn"] = gr.Button("↶ Undo", size="sm", elem_id="cosyn-undo")
                c["redo_btn"] = gr.Button("↷ Redo", size="sm", elem_id="cosyn-redo")
                c["clear_btn"] = gr.Button("Clear", size="sm", elem_id="cosyn-clear")
                c["background"] = gr.Radio([NEUTRAL, LAST_IMAGE, REAL_TILE], value=NEUTRAL, label="Background", scale=2,
                                            elem_id="cosyn-background")
            with gr.Accordion("Layout sources", open=False):
                _sources(ctx, c, start)
        with gr.Column(scale=2):
            _settings(ctx, c, names, first, mv, start)
    with gr.Row():
        c["results"] = [gr.Image(label=label, format="png", interactive=False, height=300, buttons=DOWNLOAD,
                                 elem_id=f"cosyn-out-{key}", elem_classes="cosyn-result")
                        for key, label in (("image", "Image"), ("overlay", "Label overlay"),
                                           ("instances", "Instances"), ("dist", "Distance map"))]
    with gr.Row():
        c["missed"] = gr.Markdown("", elem_id="cosyn-missed")
        c["opacity"] = gr.Slider(0, 1, value=0.5, step=0.05, label="Label opacity")
    c["gallery_view"] = gr.Gallery(label=f"Your results (kept in this browser for {gallery.KEEP_DAYS} days, or until "
                                         "Clear results): click one to show it, then Export selected", columns=8,
                                   height=200, format="png", allow_preview=False, object_fit="contain",
                                   fit_columns=False, buttons=DOWNLOAD, elem_id="cosyn-gallery")
    with gr.Row():
        c["export_sel"] = gr.Button("Export selected", elem_id="cosyn-export-selected")
        c["export_all"] = gr.Button("Export all", elem_id="cosyn-export-all")
        c["clear_results"] = gr.Button("Clear results", variant="stop", elem_id="cosyn-clear-results")
        c["export_file"] = gr.File(label="Export (zip of bundles: PNG/NPY/TIF, HoVer-Net .mat, QuPath GeoJSON, "
                                   "COCO)", interactive=False, elem_id="cosyn-export-file")
    # full width below the results: a card opened in the settings column pushed Generate off screen
    with gr.Accordion("Model card", open=False, elem_id="cosyn-card"):
        c["card"] = gr.Markdown(ctx.models.info(first).card if first else "")
    return SynthesizeUI(**c)


def _sources(ctx: StudioContext, c: dict, start: Layout) -> None:
    nuclei = start.classes[1:]
    roots = ", ".join(str(r) for r in ctx.config.data_roots) or "none configured (--data-root)"
    with gr.Tab("Random"):
        c["density"] = gr.Slider(0, 4, value=1.0, step=0.05, label="Density (nuclei per 100 µm²)",
                                 info="CoNSeP tiles: 0.1 (sparse stroma) to 2 (dense glands)")
        c["mix"] = [gr.Slider(0, 1, value=1.0, step=0.05, label=name or " ", visible=bool(name))
                    for name in (nuclei + [""] * MAX_MIX)[:MAX_MIX]]
        c["random_btn"] = gr.Button("Random layout", elem_id="cosyn-random")
    with gr.Tab("Examples"):
        examples = list(sources.example_layouts())
        c["example_dd"] = gr.Dropdown(examples, value=examples[0] if examples else None, label="Example layout",
                                      elem_id="cosyn-example")
        c["example_btn"] = gr.Button("Load example")
    with gr.Tab("Dataset sample"):
        c["ds_path"] = gr.Textbox(label="Dataset folder on the server", info=f"inside: {roots}")
        c["ds_index"] = gr.Number(0, precision=0, minimum=0, label="Sample index")
        c["ds_btn"] = gr.Button("Load the sample's layout", elem_id="cosyn-ds-load")
    with gr.Tab("Real tile"):
        c["tile_image"] = gr.File(label="Tile image (PNG, JPEG or TIFF), at the canvas's µm/px",
                                  file_types=[".png", ".jpg", ".jpeg", ".tif", ".tiff"], elem_id="cosyn-tile-image")
        c["tile_annotation"] = gr.File(label="Its annotation: a HoVer-Net .mat, a QuPath GeoJSON of nucleus outlines, "
                                             "or an instance map and a class map (two files, in that order)",
                                       file_count="multiple", elem_id="cosyn-tile-annotation",
                                       file_types=[".mat", ".geojson", ".json", ".png", ".tif", ".tiff"])
        c["tile_btn"] = gr.Button("Load the tile to edit", elem_id="cosyn-tile-load")
    with gr.Tab("Upload / download"):
        c["upload"] = gr.File(label="Layout JSON, QuPath GeoJSON or HoVer-Net .mat",
                              file_types=[".json", ".geojson", ".mat"])
        c["dl_format"] = gr.Dropdown(list(sources.LAYOUT_FORMATS), value="JSON layout", label="Save as")
        c["dl_btn"] = gr.Button("Download the current layout")
        c["dl_file"] = gr.File(label="Layout file", interactive=False)
    with gr.Tab("JSON"):
        c["layout_json"] = gr.Code(start.to_json(), language="json", label="Layout JSON", interactive=True,
                                   elem_id="cosyn-layout-json")
        c["json_btn"] = gr.Button("Apply JSON")


def _settings(ctx: StudioContext, c: dict, names: list[str], first: str | None, mv: ModelView,
              start: Layout) -> None:
    with gr.Row():
        c["model_dd"] = gr.Dropdown(names, value=first, label="Model", scale=4, elem_id="cosyn-model")
        c["refresh_btn"] = gr.Button("↻", size="sm", scale=0, min_width=40)
    c["tissue"] = gr.Dropdown(mv.tissues, value=start.tissue, label="Tissue")
    c["size"] = gr.Slider(64, mv.side_limit, value=START_SIDE, step=32, label="Canvas size (px)",
                          elem_id="cosyn-size")
    c["prompt"] = gr.Textbox(structure_prompt(start), label="Prompt", lines=3, elem_id="cosyn-prompt")
    with gr.Row():
        c["auto_prompt"] = gr.Checkbox(True, label="Prompt follows the layout")
        c["preset"] = gr.Dropdown(list(sources.presets()), value=None, label="Preset", scale=2)
    with gr.Row():
        c["steps"] = gr.Slider(1, MAX_STEPS, value=25, step=1, label="Steps", elem_id="cosyn-sample-steps")
        c["guidance"] = gr.Slider(1, 6, value=2.0, step=0.1, label="Guidance")
    with gr.Row():
        c["sampler"] = gr.Dropdown(sorted(SAMPLERS), value="dpm++", label="Sampler")
        c["n"] = gr.Slider(1, MAX_N, value=1, step=1, label="Batch count")
    # only a canvas finer than the model makes this matter: off, the result comes at the model's µm/px
    # (the status line says which stages ran)
    c["refine"] = gr.Checkbox(True, label="Bring to the canvas's µm/px", elem_id="cosyn-refine",
                              info="when the canvas is finer than the model: the model's second stage "
                                   "(by default bicubic upsampling and sharpening)")
    c["enrich"] = gr.Textbox("", label="Enrich rare classes", placeholder="e.g. inflammatory=2,other=3",
                             elem_id="cosyn-enrich",
                             info="before generating, about FACTOR (1-10) times as many nuclei of each named class "
                                  "are added beside their own kind (drawn from the seed; the canvas stays as drawn, "
                                  "the bundle's layout.json holds the enriched points); empty: off")
    c["stain_reference"] = gr.Image(
        None, label="Stain reference (optional): results take this H&E tile's stain instead of the texture bank's",
        type="numpy", sources=["upload"], elem_id="cosyn-stain", height=160)
    c["edit_mode"] = gr.Checkbox(False, label="Edit the loaded real tile", elem_id="cosyn-edit-mode",
                                 info="Generate regenerates only around the nuclei you added, removed, moved or "
                                      "reclassified, and keeps the rest of the tile (load a dataset sample or a real "
                                      "tile below the canvas first)")
    with gr.Accordion("Region to regenerate (brush, optional)", open=False, elem_id="cosyn-brush-box"):
        c["brush"] = gr.ImageEditor(label="Paint over the loaded tile where it may change; unpainted, the edit "
                                          "regenerates a margin around the changed nuclei", type="numpy",
                                    sources=[], transforms=[], layers=False, format="png", eraser=gr.Eraser(),
                                    canvas_size=(START_SIDE, START_SIDE),
                                    brush=gr.Brush(colors=["#00e5ff"], color_mode="fixed", default_size=12),
                                    elem_id="cosyn-brush")
    with gr.Row():
        c["seed"] = gr.Number(0, label="Seed", scale=3, elem_id="cosyn-seed")
        c["dice"] = gr.Button("⚄ Random seed", size="sm", scale=1)
    with gr.Row():
        c["generate_btn"] = gr.Button("Generate", variant="primary", elem_id="cosyn-generate")
        c["cancel_btn"] = gr.Button("Cancel", variant="stop", elem_id="cosyn-cancel")
    c["status"] = gr.Markdown("", elem_id="cosyn-status")
