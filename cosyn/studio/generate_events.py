"""Synthesize tab wiring: Generate with live previews and Cancel, the gallery, export.

Handlers return {component: value} dicts: a component left out keeps its value, so no handler
depends on the order of an outputs list.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from cosyn.core.triple import Triple
from cosyn.enrichment import PARAMS_KEY, parse_request
from cosyn.model.pipeline import SamplingCancelled, StepPreview
from cosyn.model.settings import SamplingSettings
from cosyn.stages.texture.stain import Stain
from cosyn.studio import canvas as cv
from cosyn.studio import gallery
from cosyn.studio.context import SAMPLING_GROUP, StudioContext
from cosyn.studio.errors import notified
from cosyn.studio.gallery import session_dir
from cosyn.studio.real_tile import TILES, brush_mask, kept_tile
from cosyn.studio.sampling import LONG_RUN_S, Request, Saved, TileEdit, duration
from cosyn.studio.synthesize_tab import LAST_IMAGE, NEUTRAL, SynthesizeUI, Updates
from cosyn.studio.views import missed_line, preview_views, stages_line, triple_views

CANCEL_WAIT_S = 30.0  # longest a Cancel waits for the current step to end
SWEEP_EVERY_S = 3600.0  # expired browser folders are looked for at most hourly


def panels(ui: SynthesizeUI, pictures: Sequence[Any]) -> Updates:
    return dict(zip(ui.results, pictures, strict=True))


def shown_triple(ui: SynthesizeUI, t: Triple, opacity: float, folder: Path) -> Updates:
    """The result panels and the missed-centroid line for `t`, drawn at the triple's own size
    (a refined triple is at the canvas' µm/px, a base one at the model's). The pictures are files in
    the browser's `folder`, so Clear results finds Gradio's copies of them."""
    pictures = gallery.picture_files(triple_views(t, opacity).pictures, folder / gallery.VIEWS)
    return {**panels(ui, pictures), ui.missed: missed_line(t.params)}


def done_line(saved: list[gallery.Entry], first: Triple) -> str:
    n = len(saved)
    return f"Done: {n} result{'s' * (n > 1)} (seed {first.params['seed']}), {stages_line(first)}.{enriched_line(first)}"


def enriched_line(t: Triple) -> str:
    """' Enriched: inflammatory 4 → 8.' for an enriched triple (the named classes' counts), else ''."""
    record = t.params.get(PARAMS_KEY)
    if not record:
        return ""
    before, after = record["counts_before"], record["counts_after"]
    return " Enriched: " + ", ".join(f"{name} {before[name]} → {after[name]}" for name in record["factors"]) + "."


def wire(ctx: StudioContext, demo: gr.Blocks, ui: SynthesizeUI) -> None:
    _wire_generate(ctx, ui)
    _wire_results(ctx, ui)
    _wire_export(ctx, demo, ui)


@dataclass
class GenerateForm:
    """What one Generate click asks for, read by name from the page's components (`components`), so no
    handler or test depends on the order of a list of inputs."""

    canvas: dict
    prompt: str
    model: str
    steps: float
    guidance: float
    sampler: str
    seed: float
    n: float
    refine: bool
    opacity: float
    items: list
    background: str
    browser: str
    confirmed: str | None
    edit_mode: bool
    edit_source: dict | None
    brush: dict | None
    enrich: str = ""  # "CLASS=FACTOR[,...]"; empty: off
    stain_reference: np.ndarray | None = None  # an uploaded H&E image whose stain the triples take

    @staticmethod
    def components(ui: SynthesizeUI) -> dict[str, gr.components.Component]:
        return {"canvas": ui.canvas_state, "prompt": ui.prompt, "model": ui.model_dd, "steps": ui.steps,
                "guidance": ui.guidance, "sampler": ui.sampler, "seed": ui.seed, "n": ui.n, "refine": ui.refine,
                "opacity": ui.opacity, "items": ui.entries, "background": ui.background, "browser": ui.browser_id,
                "confirmed": ui.confirmed, "edit_mode": ui.edit_mode, "edit_source": ui.edit_source,
                "brush": ui.brush, "enrich": ui.enrich, "stain_reference": ui.stain_reference}

    @classmethod
    def read(cls, ui: SynthesizeUI, values: dict[gr.components.Component, Any]) -> GenerateForm:
        return cls(**{name: values[c] for name, c in cls.components(ui).items()})

    @property
    def settings(self) -> SamplingSettings:
        return SamplingSettings(self.steps, self.guidance, self.sampler, self.seed, self.n, bool(self.refine))


def form_request(ctx: StudioContext, form: GenerateForm) -> Request:
    """The form as a sampling request: a plain generate (its canvas enriched first when "Enrich rare
    classes" is filled in), or with "Edit" ticked an edit of the loaded tile (in the brushed region, if one
    is painted). Both run through Request.run, previews and all."""
    if not form.model:
        raise gr.Error("No checkpoint is loaded: see the note at the top of the page.")
    edit = None
    if form.edit_mode:
        tile = kept_tile(form.edit_source, ctx.config.outputs)
        edit = TileEdit(tile, brush_mask(form.brush, tile.image.shape[:2]))
    pipe = ctx.models.get(form.model)
    stain = None
    if form.stain_reference is not None:
        try:
            stain = Stain.of([np.asarray(form.stain_reference)[..., :3].astype(np.uint8)])
        except ValueError as e:
            raise ValueError(f"Stain reference: {e}.") from None
    return Request(pipe, cv.layout_of(form.canvas), form.prompt, form.settings, edit,
                   parse_request(form.enrich, pipe.class_set), stain)


def _long_run_note(ctx: StudioContext, form: GenerateForm, req: Request) -> tuple[str, str] | None:
    """(the click's key, what to say) when the run is long and this click does not confirm it."""
    estimate = ctx.speed.estimate(req.settings, req.canvas)
    key = repr((form.model, req.settings, req.canvas.width, req.canvas.height, len(req.layout.points)))
    if estimate <= LONG_RUN_S or form.confirmed == key:  # a long run starts only when asked twice
        return None
    return key, (f"This run would take about {duration(estimate)} ({req.settings.n} × {req.settings.steps} steps "
                 f"on a {req.canvas.width}×{req.canvas.height} px model canvas). Click Generate again to start it "
                 "(Cancel stops it between steps), or ask for fewer steps, triples or a smaller canvas.")


def _wire_generate(ctx: StudioContext, ui: SynthesizeUI) -> None:
    outputs = [*ui.results, ui.missed, ui.gallery_view, ui.entries, ui.shown, ui.last_image, ui.canvas_img,
               ui.status, ui.confirmed]
    gradio_cache = ctx.config.gradio_temp.resolve()

    @notified(ui.status)
    def on_generate(values: dict, request: gr.Request):
        form = GenerateForm.read(ui, values)
        yield {ui.status: "Loading the model…"}
        req = form_request(ctx, form)
        note = _long_run_note(ctx, form, req)
        if note is not None:
            yield {ui.confirmed: note[0], ui.status: note[1]}
            return
        started = time.monotonic()
        flag = ctx.cancels.begin(request.session_hash)
        folder = session_dir(ctx.config.outputs, form.browser)
        items = gallery.own_entries(form.items, folder)
        try:
            for item in req.run(flag, folder, first_index=len(items) + 1, checkpoint=form.model):
                if isinstance(item, StepPreview):
                    pictures = preview_views(item, req.canvas, form.opacity).pictures
                    yield {**panels(ui, gallery.picture_files(pictures, folder / gallery.PREVIEWS)),
                           ui.status: f"Sampling: step {item.step} of {item.total}"}
                    continue
                ctx.speed.record(req.settings, req.canvas, time.monotonic() - started)
                yield _finished(ui, form, [*items, *item.entries], item, folder)
        except SamplingCancelled as e:
            line = f"{e}."
            # ended here, before the yield, so the Cancel handler (which waits for the end) answers the same line
            ctx.cancels.end(request.session_hash, flag, line)
            yield {ui.status: line}
        finally:
            ctx.cancels.end(request.session_hash, flag)
            # Gradio has served every preview by now (it sends each yield before asking for the next), and the
            # result replaced them (a cancelled run's last one stays on screen, already loaded): their files and
            # Gradio's copies go, so no copy of them outlives the run
            gallery.forget([folder / gallery.PREVIEWS], gradio_cache)

    # the status line says what runs ("Sampling: step k of n"); Gradio's own progress text stays out of it
    generating = ui.generate_btn.click(on_generate, set(GenerateForm.components(ui).values()), outputs,
                                       concurrency_id=SAMPLING_GROUP, concurrency_limit=1, show_progress="hidden")

    _wire_cancel(ctx, ui, generating)
    ui.dice.click(lambda: random.randrange(2**31), None, ui.seed, show_progress="hidden")


def _finished(ui: SynthesizeUI, form: GenerateForm, items: list[gallery.Entry], saved: Saved,
              folder: Path) -> Updates:
    """The page once a run is saved: its first triple shown, the gallery grown, the canvas redrawn."""
    first = saved.triples[0]
    back = first.image if form.background == LAST_IMAGE else None
    return {**shown_triple(ui, first, form.opacity, folder),
            ui.gallery_view: [(e["image"], e["caption"]) for e in items], ui.entries: items,
            ui.shown: saved.entries[0], ui.last_image: saved.entries[0]["image"],
            ui.canvas_img: cv.render(cv.layout_of(form.canvas), back), ui.status: done_line(saved.entries, first),
            ui.confirmed: None}


def _wire_cancel(ctx: StudioContext, ui: SynthesizeUI, generating: gr.events.Dependency) -> None:
    def on_cancel(request: gr.Request) -> str:
        # answers once the run has ended, so a Generate click after "Cancelled…" is never taken for a
        # second click on the run being cancelled (Gradio drops those)
        outcome = ctx.cancels.cancel(request.session_hash, CANCEL_WAIT_S)
        if outcome is None:
            return "Nothing is running."
        return outcome or "Cancelled."  # "": the run had not ended within CANCEL_WAIT_S; it stops at its next step

    # the flag stops the sampling thread between two steps; `cancels` ends the browser's side of the
    # run and takes a run that is still waiting in the queue out of it
    ui.cancel_btn.click(on_cancel, None, ui.status, cancels=[generating], queue=False)


def _wire_results(ctx: StudioContext, ui: SynthesizeUI) -> None:
    outputs = ctx.config.outputs

    @notified()
    def on_opacity(entry, opacity, browser):
        # gr.skip() alone leaves every output as it is (an empty dict is not read that way)
        if not entry:
            return gr.skip()
        folder = session_dir(outputs, browser)
        return panels(ui, gallery.picture_files(triple_views(gallery.load(entry), opacity).pictures,
                                                folder / gallery.VIEWS))

    ui.opacity.release(on_opacity, [ui.shown, ui.opacity, ui.browser_id], ui.results, show_progress="hidden")

    @notified()
    def on_pick(items, opacity, browser, evt: gr.SelectData):
        folder = session_dir(outputs, browser)
        (entry,) = gallery.own_entries((items or [])[evt.index:evt.index + 1], folder) or [None]
        if entry is None:
            raise FileNotFoundError("That result is no longer on the server (cleared or expired): generate again.")
        return {**shown_triple(ui, gallery.load(entry), opacity, folder), ui.shown: entry}

    ui.gallery_view.select(on_pick, [ui.entries, ui.opacity, ui.browser_id], [*ui.results, ui.missed, ui.shown])


def _wire_export(ctx: StudioContext, demo: gr.Blocks, ui: SynthesizeUI) -> None:
    outputs = ctx.config.outputs
    gradio_cache = ctx.config.gradio_temp.resolve()

    def export(chosen: list[gallery.Entry], browser: str) -> str:
        chosen = gallery.own_entries(chosen, session_dir(outputs, browser))
        if not chosen:
            raise gr.Error("Nothing to export: select a result in the gallery (or generate first).")
        return str(gallery.export_zip(chosen, session_dir(outputs, browser) / "exports"))

    @notified()
    def on_export_selected(entry, browser):
        return export([entry] if entry else [], browser)

    @notified()
    def on_export_all(items, browser):
        return export(items, browser)

    ui.export_sel.click(on_export_selected, [ui.shown, ui.browser_id], ui.export_file)
    ui.export_all.click(on_export_all, [ui.entries, ui.browser_id], ui.export_file)

    @notified(ui.status)
    def on_clear(browser, canvas, background):
        """Delete this browser's results (the loaded real tile stays: it is a layout source, not a result),
        with the copies Gradio made to serve them, and empty every view of them."""
        folder = session_dir(outputs, browser)
        results = [p for p in folder.iterdir() if p.name != TILES] if folder.is_dir() else []
        gallery.forget(results, gradio_cache)
        with contextlib.suppress(OSError):  # kept when it holds the loaded tile
            folder.rmdir()
        redrawn = {ui.background: NEUTRAL, ui.canvas_img: cv.render(cv.layout_of(canvas))} \
            if background == LAST_IMAGE else {}  # the canvas showed a cleared image
        return {ui.entries: [], ui.gallery_view: [], ui.shown: None, ui.export_file: None, ui.last_image: None,
                **dict.fromkeys(ui.results), ui.missed: "", **redrawn, ui.status: "Results cleared."}

    ui.clear_results.click(on_clear, [ui.browser_id, ui.canvas_state, ui.background],
                           [ui.entries, ui.gallery_view, ui.shown, ui.export_file, ui.last_image, *ui.results,
                            ui.missed, ui.background, ui.canvas_img, ui.status])

    last_sweep = [-SWEEP_EVERY_S]

    @notified()
    def on_open(browser, items, opacity):
        """A page (re)opened: give a new browser its id, and show the results this browser kept, the
        latest in the result panels."""
        browser = browser or gallery.new_browser_id()
        if time.monotonic() - last_sweep[0] >= SWEEP_EVERY_S:  # walking every folder on each page open is waste
            last_sweep[0] = time.monotonic()
            gallery.sweep_expired(outputs)
        folder = session_dir(outputs, browser)
        items = gallery.own_entries(items, folder)
        latest = shown_triple(ui, gallery.load(items[-1]), opacity, folder) if items else {}
        return {ui.browser_id: browser, ui.entries: items, ui.shown: items[-1] if items else None, **latest,
                ui.gallery_view: [(e["image"], e["caption"]) for e in items]}

    demo.load(on_open, [ui.browser_id, ui.entries, ui.opacity],
              [ui.browser_id, ui.entries, ui.gallery_view, ui.shown, *ui.results, ui.missed])
