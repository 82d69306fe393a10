"""The Synthesize tab's "Stain reference": an uploaded H&E tile's stain goes with the request, results carry it,
and a reference the model cannot apply (or an unreadable one) is refused like the page's other input errors.
Handlers are called as Gradio calls them, without a browser."""

from __future__ import annotations

import re
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import disc_sample
from test_stain import LILAC, tissue
from test_studio_enrich import CANVAS, demo  # noqa: F401  (the page fixture)

from cosyn.data.formats import read_dataset
from cosyn.model.settings import SamplingSettings
from cosyn.stages.base import STAIN_PARAM
from cosyn.stages.texture import TextureStage, bank_from_samples
from cosyn.stages.texture.stain import Stain
from cosyn.studio import canvas as cv
from cosyn.studio.generate_events import GenerateForm
from cosyn.studio.sampling import Request, TileEdit


def _generate(demo, reference: np.ndarray | None) -> list[dict]:  # noqa: F811
    event = next(f for f in demo.fns.values() if f.name == "on_generate")
    form = GenerateForm(cv.new_canvas(CANVAS), "", "default", steps=2, guidance=2.0, sampler="ddim", seed=3, n=1,
                        refine=True, opacity=0.5, items=[], background="neutral", browser="stain", confirmed=None,
                        edit_mode=False, edit_source=None, brush=None, stain_reference=reference)
    components = GenerateForm.components(demo.cosyn_synthesize)
    assert set(components.values()) == set(event.inputs)  # the upload is one of the click's inputs, read by name
    values = {c: getattr(form, name) for name, c in components.items()}
    return list(event.fn(values, request=SimpleNamespace(session_hash="stain")))


@pytest.mark.parametrize("reference, message", [
    (tissue(LILAC, 0), "a stain reference is applied by the texture stage, and the upsampler stage does not take "
                       "one here"),
    (np.full((32, 32, 3), 255, np.uint8), "Stain reference: too few stained pixels to measure a stain"),
])
def test_a_reference_that_cannot_be_applied_is_refused_in_the_status_line(demo, reference, message):  # noqa: F811
    with pytest.warns(UserWarning, match=re.escape(message)):  # gr.Warning, outside a page
        *_, refused = _generate(demo, reference)
    status = refused[demo.cosyn_synthesize.status]
    assert status.startswith("Refused: ") and message in status


def test_a_request_with_a_stain_makes_triples_in_it_and_refuses_an_edit(pipe, data, tmp_path, monkeypatch):
    bank = bank_from_samples(list(read_dataset(data, "folder")), list(pipe.class_set.names), "test tiles")
    monkeypatch.setattr(pipe, "second_stage", TextureStage(bank))
    stain = Stain.of([tissue(LILAC, 1)])
    req = Request(pipe, CANVAS, None, SamplingSettings(steps=1, seed=2), stain=stain)
    *_, saved = req.run(threading.Event(), tmp_path, first_index=1, checkpoint="tiny")
    assert saved.triples[0].params[STAIN_PARAM] == stain.to_dict()
    with pytest.raises(ValueError, match="an edit keeps the loaded tile's own stain"):
        Request(pipe, CANVAS, None, SamplingSettings(steps=1), edit=TileEdit(disc_sample(size=(64, 64))), stain=stain)
