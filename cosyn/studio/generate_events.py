"""Synthesize tab wiring: Generate with live previews and Cancel, the gallery, export.

Handlers return {component: value} dicts: a component left out keeps its value, so no handler
depends on the order of an outputs list.
"""

from __future__ import annotations

import random
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import gradio as gr

from cosyn.core.triple import Triple
from cosyn.editing import edit_tile
from cosyn.model.pipeline import SamplingCancelled, StepPreview
from cosyn.model.settings import SamplingSettings
from cosyn.studio import canvas as cv
from cosyn.studio import gallery
from cosyn.studio.context import SAMPLING_GROUP, StudioContext
from cosyn.studio.errors import readable
from cosyn.studio.gallery import session_dir
from cosyn.studio.real_tile import brush_mask, kept_tile
from cosyn.studio.sampling import LONG_RUN_S, Request, Saved, duration
from cosyn.studio.synthesize_tab import LAST_IMAGE, SynthesizeUI, Updates
from cosyn.studio.views import Views, missed_line, preview_views, stages_line, triple_views

CANCEL_WAIT_S = 30.0  # longest a Cancel waits for the current step to end
SWEEP_EVERY_S = 3600.0  # expired browser folders are looked for at most hourly


def panels(ui: SynthesizeUI, v: Views) -> Updates:
    return dict(zip(ui.results, (v.image, v.overlay, v.contours, v.dist), strict=True))


def shown_triple(ui: SynthesizeUI, t: Triple, opacity: float) -> Updates:
    """The result panels and the missed-centroid line for `t`, drawn at the triple's own size
    (a refined triple is at the canvas' µm/px, a base one at the model's)."""
    return {**panels(ui, triple_views(t, opacity)), ui.missed: missed_line(t.params)}


def done_line(saved: list[gallery.Entry], first: Triple) -> str:
    n = len(saved)
    return f"Done: {n} result{'s' * (n > 1)} (seed {first.params['seed']}), {stages_line(first)}."


def wire(ctx: StudioContext, demo: gr.Blocks, ui: SynthesizeUI) -> None:
    _wire_generate(ctx, ui)
    _wire_results(ui)
    _wire_export(ctx, demo, ui)


def _wire_generate(ctx: StudioContext, ui: SynthesizeUI) -> None:
    outputs = [*ui.results, ui.missed, ui.gallery_view, ui.entries, ui.shown, ui.last_image, ui.canvas_img,
               ui.status, ui.confirmed]

    @readable
    def on_generate(canvas, prompt, model, steps, guidance, sampler, seed, n, refine, opacity, items, background,
                    browser, confirmed, edit_mode, edit_source, brush, request: gr.Request,
                    progress=gr.Progress()):  # noqa: B008 (how Gradio hands out a bar)
        if not model:
            raise gr.Error("No checkpoint is loaded: see the note at the top of the page.")
        settings = SamplingSettings(steps, guidance, sampler, seed, n, bool(refine))
        layout = cv.layout_of(canvas)
        progress(0, desc="loading the model")
        req = Request(ctx.models.get(model), layout, prompt, settings)
        estimate = ctx.speed.estimate(settings, req.canvas)
        key = repr((model, settings, req.canvas.width, req.canvas.height, len(layout.points)))
        if estimate > LONG_RUN_S and confirmed != key:  # a long run starts only when asked twice
            yield {ui.confirmed: key, ui.status: (
                f"This run would take about {duration(estimate)} ({settings.n} × {settings.steps} steps on a "
                f"{req.canvas.width}×{req.canvas.height} px model canvas). Click Generate again to start it "
                "(Cancel stops it between steps), or ask for fewer steps, triples or a smaller canvas.")}
            return
        started = time.monotonic()
        flag = ctx.cancels.begin(request.session_hash)
        folder = session_dir(ctx.config.outputs, browser)
        items = gallery.own_entries(items, folder)
        run = req.run(flag, folder, first_index=len(items) + 1, checkpoint=model)
        if edit_mode:
            run = _edit_run(ctx, req, edit_source, brush, flag, folder, len(items) + 1, model)
        try:
            for item in run:
                if isinstance(item, StepPreview):
                    progress((item.step, item.total), desc="sampling")
                    yield {**panels(ui, preview_views(item, req.canvas, opacity)),
                           ui.status: f"Sampling: step {item.step} of {item.total}"}
                    continue
                ctx.speed.record(settings, req.canvas, time.monotonic() - started)
                items = [*items, *item.entries]
                first = item.triples[0]
                back = first.image if background == LAST_IMAGE else None
                yield {**shown_triple(ui, first, opacity), ui.gallery_view: [(e["image"], e["caption"]) for e in items],
                       ui.entries: items, ui.shown: item.entries[0], ui.last_image: item.entries[0]["image"],
                       ui.canvas_img: cv.render(layout, back), ui.status: done_line(item.entries, first),
                       ui.confirmed: None}
        except SamplingCancelled as e:
            yield {ui.status: f"Cancelled ({e})."}
        finally:
            ctx.cancels.end(request.session_hash, flag)

    inputs = [ui.canvas_state, ui.prompt, ui.model_dd, ui.steps, ui.guidance, ui.sampler, ui.seed, ui.n, ui.refine,
              ui.opacity, ui.entries, ui.background, ui.browser_id, ui.confirmed, ui.edit_mode, ui.edit_source,
              ui.brush]
    generating = ui.generate_btn.click(on_generate, inputs, outputs, concurrency_id=SAMPLING_GROUP, concurrency_limit=1,
                                       show_progress_on=[ui.status])

    _wire_cancel(ctx, ui, generating)
    ui.dice.click(lambda: random.randrange(2**31), None, ui.seed, show_progress="hidden")


def _wire_cancel(ctx: StudioContext, ui: SynthesizeUI, generating: gr.events.Dependency) -> None:
    def on_cancel(request: gr.Request) -> str:
        # answers once the run has ended, so a Generate click after "Cancelled." is never taken for a
        # second click on the run being cancelled (Gradio drops those)
        return "Cancelled." if ctx.cancels.cancel(request.session_hash, CANCEL_WAIT_S) else "Nothing is running."

    # the flag stops the sampling thread between two steps; `cancels` ends the browser's side of the
    # run and takes a run that is still waiting in the queue out of it
    ui.cancel_btn.click(on_cancel, None, ui.status, cancels=[generating], queue=False)


def _edit_run(ctx: StudioContext, req: Request, source: dict | None, brush: dict | None, cancel: threading.Event,
              folder: Path, first_index: int, checkpoint: str) -> Iterator[StepPreview | Saved]:
    """Like Request.run, for an edit of the loaded real tile (in the brushed region, if one is painted):
    previews, then the edited tile saved."""
    tile = kept_tile(source, ctx.config.outputs)
    mask = brush_mask(brush, tile.image.shape[:2])
    last: list[StepPreview] = []

    def on_step(preview: StepPreview) -> bool:
        last[:] = [preview]
        return not cancel.is_set()

    triple = edit_tile(req.pipe, tile, req.layout, mask, settings=req.settings, on_step=on_step)
    triple.params["edit"]["region"] = "brushed" if mask is not None else "margin around the changed nuclei"
    yield from last  # the edit runs in this thread: its last preview, then the result
    yield Saved([triple], gallery.save_triples([triple], folder, first_index, checkpoint))


def _wire_results(ui: SynthesizeUI) -> None:
    @readable
    def on_opacity(entry, opacity):
        # gr.skip() alone leaves every output as it is (an empty dict is not read that way)
        return panels(ui, triple_views(gallery.load(entry), opacity)) if entry else gr.skip()

    ui.opacity.release(on_opacity, [ui.shown, ui.opacity], ui.results, show_progress="hidden")

    @readable
    def on_pick(items, opacity, evt: gr.SelectData):
        entry = items[evt.index]
        return {**shown_triple(ui, gallery.load(entry), opacity), ui.shown: entry}

    ui.gallery_view.select(on_pick, [ui.entries, ui.opacity], [*ui.results, ui.missed, ui.shown])


def _wire_export(ctx: StudioContext, demo: gr.Blocks, ui: SynthesizeUI) -> None:
    outputs = ctx.config.outputs

    def export(chosen: list[gallery.Entry], browser: str) -> str:
        chosen = gallery.own_entries(chosen, session_dir(outputs, browser))
        if not chosen:
            raise gr.Error("Nothing to export: select a result in the gallery (or generate first).")
        return str(gallery.export_zip(chosen, session_dir(outputs, browser) / "exports"))

    @readable
    def on_export_selected(entry, browser):
        return export([entry] if entry else [], browser)

    @readable
    def on_export_all(items, browser):
        return export(items, browser)

    ui.export_sel.click(on_export_selected, [ui.shown, ui.browser_id], ui.export_file)
    ui.export_all.click(on_export_all, [ui.entries, ui.browser_id], ui.export_file)

    @readable
    def on_clear(browser):
        shutil.rmtree(session_dir(outputs, browser), ignore_errors=True)
        return {ui.entries: [], ui.gallery_view: [], ui.shown: None, ui.export_file: None,
                ui.status: "Results cleared."}

    ui.clear_results.click(on_clear, ui.browser_id, [ui.entries, ui.gallery_view, ui.shown, ui.export_file,
                                                      ui.status])

    last_sweep = [-SWEEP_EVERY_S]

    def on_open(browser, items):
        """A page (re)opened: give a new browser its id, and show the results this browser kept."""
        browser = browser or gallery.new_browser_id()
        if time.monotonic() - last_sweep[0] >= SWEEP_EVERY_S:  # walking every folder on each page open is waste
            last_sweep[0] = time.monotonic()
            gallery.sweep_expired(outputs)
        items = gallery.own_entries(items, session_dir(outputs, browser))
        return {ui.browser_id: browser, ui.entries: items,
                ui.gallery_view: [(e["image"], e["caption"]) for e in items]}

    demo.load(on_open, [ui.browser_id, ui.entries], [ui.browser_id, ui.entries, ui.gallery_view])
