"""Synthesize tab wiring: Generate with live previews and Cancel, the gallery, export."""

from __future__ import annotations

import random
import shutil

import gradio as gr
import numpy as np

from cosyn.model.pipeline import SamplingCancelled, StepPreview
from cosyn.studio import canvas as cv
from cosyn.studio import gallery
from cosyn.studio.context import SAMPLING_GROUP, StudioContext
from cosyn.studio.errors import readable
from cosyn.studio.gallery import session_dir
from cosyn.studio.sampling import SampleSettings, stream_samples
from cosyn.studio.synthesize_tab import LAST_IMAGE, SynthesizeUI
from cosyn.studio.views import Views, missed_line, preview_views, triple_views

CANCEL_WAIT_S = 30.0  # longest a Cancel waits for the current step to end


def panels(v: Views) -> list[np.ndarray]:
    return [v.image, v.overlay, v.contours, v.dist]


def wire(ctx: StudioContext, demo: gr.Blocks, ui: SynthesizeUI) -> None:
    outputs = [*ui.results, ui.missed, ui.gallery_view, ui.entries, ui.shown, ui.last_image, ui.canvas_img,
               ui.status]
    unchanged = [gr.skip()] * (len(outputs) - len(ui.results) - 1)  # all but the panels and the status

    @readable
    def on_generate(canvas, prompt, model, steps, guidance, sampler, seed, n, opacity, items, background,
                    request: gr.Request, progress=gr.Progress()):  # noqa: B008 (how Gradio hands out a bar)
        if not model:
            raise gr.Error("No checkpoint is loaded: see the note at the top of the page.")
        settings = SampleSettings(steps, guidance, sampler, seed, n)
        layout = cv.layout_of(canvas)
        progress(0, desc="loading the model")
        pipe = ctx.models.get(model)
        at_model = pipe.conform_layout(layout)  # the layout as sampled, for cutting preview instances
        settings.check_work(at_model)
        flag = ctx.cancels.begin(request.session_hash)
        try:
            for item in stream_samples(pipe, layout, prompt, settings, flag):
                if isinstance(item, StepPreview):
                    progress((item.step, item.total), desc="sampling")
                    yield (*panels(preview_views(item, at_model, opacity)), *unchanged,
                           f"Sampling: step {item.step} of {item.total}")
                    continue
                folder = session_dir(ctx.config.outputs, request.session_hash)
                new = gallery.save_triples(item, folder, first_index=len(items) + 1, checkpoint=model)
                items = [*items, *new]
                first = item[0]
                back = first.image if background == LAST_IMAGE else None
                done = f"Done: {len(new)} result{'s' * (len(new) > 1)} (seed {settings.seed})."
                yield (*panels(triple_views(first, opacity)), missed_line(first.params),
                       [(e["image"], e["caption"]) for e in items], items, new[0], new[0]["image"],
                       cv.render(layout, back), done)
        except SamplingCancelled as e:
            yield *[gr.skip()] * (len(outputs) - 1), f"Cancelled ({e})."
        finally:
            ctx.cancels.end(request.session_hash, flag)

    inputs = [ui.canvas_state, ui.prompt, ui.model_dd, ui.steps, ui.guidance, ui.sampler, ui.seed, ui.n, ui.opacity,
              ui.entries, ui.background]
    generating = ui.generate_btn.click(on_generate, inputs, outputs, concurrency_id=SAMPLING_GROUP, concurrency_limit=1,
                                       show_progress_on=[ui.status])

    def on_cancel(request: gr.Request) -> str:
        # answers once the run has ended, so a Generate click after "Cancelled." is never taken for a
        # second click on the run being cancelled (Gradio drops those)
        return "Cancelled." if ctx.cancels.cancel(request.session_hash, CANCEL_WAIT_S) else "Nothing is running."

    # the flag stops the sampling thread between two steps; `cancels` ends the browser's side of the
    # run and takes a run that is still waiting in the queue out of it
    ui.cancel_btn.click(on_cancel, None, ui.status, cancels=[generating], queue=False)
    ui.dice.click(lambda: random.randrange(2**31), None, ui.seed, show_progress="hidden")

    # -- results and gallery ------------------------------------------------------------------------------
    @readable
    def on_opacity(entry, opacity):
        if not entry:
            return [gr.skip()] * len(ui.results)
        return panels(triple_views(gallery.load(entry), opacity))

    ui.opacity.release(on_opacity, [ui.shown, ui.opacity], ui.results, show_progress="hidden")

    @readable
    def on_pick(items, opacity, evt: gr.SelectData):
        entry = items[evt.index]
        t = gallery.load(entry)
        return *panels(triple_views(t, opacity)), missed_line(t.params), entry

    ui.gallery_view.select(on_pick, [ui.entries, ui.opacity], [*ui.results, ui.missed, ui.shown])

    def export(chosen: list[gallery.Entry], request: gr.Request) -> str:
        if not chosen:
            raise gr.Error("Nothing to export: select a result in the gallery (or generate first).")
        return str(gallery.export_zip(chosen, session_dir(ctx.config.outputs, request.session_hash) / "exports"))

    @readable
    def on_export_selected(entry, request: gr.Request):
        return export([entry] if entry else [], request)

    @readable
    def on_export_all(items, request: gr.Request):
        return export(items, request)

    ui.export_sel.click(on_export_selected, ui.shown, ui.export_file)
    ui.export_all.click(on_export_all, ui.entries, ui.export_file)

    def on_unload(request: gr.Request) -> None:
        shutil.rmtree(session_dir(ctx.config.outputs, request.session_hash), ignore_errors=True)

    demo.unload(on_unload)  # a session's bundles go with it; exports already handed out live in Gradio's cache
