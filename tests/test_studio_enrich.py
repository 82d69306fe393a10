"""The Synthesize tab's "Enrich rare classes": the form field enriches the canvas layout before sampling, the
bundle holds the enriched points and records them, a bad request is refused like the page's other input errors.
Handlers are called as Gradio calls them, without a browser."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import disc_sample
from tiny import text_encoder, tiny_pipeline

from cosyn.core.layout import Layout, Point
from cosyn.model.settings import SamplingSettings
from cosyn.studio import canvas as cv
from cosyn.studio import models
from cosyn.studio.config import StudioConfig
from cosyn.studio.generate_events import GenerateForm
from cosyn.studio.sampling import Request, TileEdit
from cosyn.studio.ui import build_app

CLASSES = ["background", "other", "inflammatory", "epithelial", "spindle"]
# a 64² canvas at 0.25 µm/px, 3 inflammatory nuclei in a row and 3 epithelial ones
CANVAS = Layout(64, 64, CLASSES, [*(Point(12 + 14 * i, 14, "inflammatory") for i in range(3)),
                                  *(Point(12 + 14 * i, 50, "epithelial") for i in range(3))], 0.25, "colon")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("enrich")
    tiny_pipeline().save_pretrained(tmp / "checkpoints" / "default")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(models, "TextEncoder", lambda name: text_encoder())
        yield build_app(StudioConfig(checkpoints=tmp / "checkpoints", runs=tmp / "runs", outputs=tmp / "outputs"))


def _generate(demo, enrich: str, browser: str) -> list[dict]:
    event = next(f for f in demo.fns.values() if f.name == "on_generate")
    form = GenerateForm(cv.new_canvas(CANVAS), "", "default", steps=2, guidance=2.0, sampler="ddim", seed=3, n=1,
                        refine=False, opacity=0.5, items=[], background="neutral", browser=browser, confirmed=None,
                        edit_mode=False, edit_source=None, brush=None, enrich=enrich)
    components = GenerateForm.components(demo.cosyn_synthesize)
    assert set(components.values()) == set(event.inputs)  # the field is one of the click's inputs, read by name
    values = {c: getattr(form, name) for name, c in components.items()}
    return list(event.fn(values, request=SimpleNamespace(session_hash="enrich")))


def _status(demo, update: dict) -> str:
    return next(v for c, v in update.items() if getattr(c, "elem_id", None) == "cosyn-status")


def test_the_field_enriches_the_layout_the_bundle_holds(demo):
    *_, done = _generate(demo, "Inflammatory=2", "enriched")  # class names as the user types them
    entry = next(v for v in done.values() if isinstance(v, list) and v and isinstance(v[0], dict))[0]
    params = json.loads((Path(entry["dir"]) / "params.json").read_text())
    counts = Layout.load(Path(entry["dir"]) / "layout.json").counts()
    record = params["enrich"]
    assert record["factors"] == {"inflammatory": 2.0}
    assert record["counts_before"] == CANVAS.counts()
    assert counts == record["counts_after"]
    assert 5 <= counts["inflammatory"] <= 6 and counts["epithelial"] == 3
    assert _status(demo, done).endswith(f"Enriched: inflammatory 3 → {counts['inflammatory']}.")


def test_an_empty_field_leaves_the_layout_as_drawn(demo):
    *_, done = _generate(demo, "  ", "plain")
    entry = next(v for v in done.values() if isinstance(v, list) and v and isinstance(v[0], dict))[0]
    assert "enrich" not in json.loads((Path(entry["dir"]) / "params.json").read_text())
    assert Layout.load(Path(entry["dir"]) / "layout.json").counts() == CANVAS.counts()


@pytest.mark.parametrize(("spec", "message"), [
    ("bogus=2", "enrich 'bogus=2': unknown class 'bogus'; known: other, inflammatory, epithelial, spindle"),
    ("inflammatory=20", "enrich 'inflammatory=20': factor must be a finite number within 1..10"),
])
def test_a_bad_request_is_refused_in_the_status_line_and_a_warning(demo, spec, message):
    with pytest.warns(UserWarning, match=re.escape(message)):  # gr.Warning, outside a page
        *_, refused = _generate(demo, spec, "refused")
    assert refused == {demo.cosyn_synthesize.status: f"Refused: {message}"}  # nothing else changes


def test_a_request_enriches_from_its_seed_and_refuses_an_edit(pipe, tmp_path):
    layout = CANVAS
    settings = SamplingSettings(steps=1, seed=7)
    first, again = (Request(pipe, layout, None, settings, enrich={"inflammatory": 2.0}) for _ in range(2))
    assert first.layout == again.layout and first.layout != layout  # reruns of the same seed are identical
    assert first.canvas.counts() == first.layout.counts()  # the base model samples the enriched points
    *_, saved = first.run(threading.Event(), tmp_path, first_index=1, checkpoint="tiny")
    assert saved.triples[0].params["enrich"] == first.enrichment
    with pytest.raises(ValueError, match="cannot be combined with editing"):
        Request(pipe, layout, None, settings, edit=TileEdit(disc_sample(size=(64, 64))), enrich={"inflammatory": 2})
