"""The Synthesize tab's handlers, called as Gradio calls them, without a browser.

Handlers return {component: value}; Gradio maps a dict onto the event's outputs by component,
so every key must be one of them, and the values must be what the components show.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import disc_sample
from gradio.blocks import convert_component_dict_to_list
from PIL import Image
from tiny import text_encoder, tiny_pipeline

from cosyn.core.layout import Layout, Point
from cosyn.data.formats import write_dataset
from cosyn.studio import canvas as cv
from cosyn.studio import models
from cosyn.studio.config import StudioConfig
from cosyn.studio.generate_events import GenerateForm
from cosyn.studio.ui import build_app

CLASSES = ["background", "other", "inflammatory", "epithelial", "spindle"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("events")
    tiny_pipeline().save_pretrained(tmp / "checkpoints" / "default")
    tiny_pipeline(seed=1).save_pretrained(tmp / "checkpoints" / "second")
    write_dataset([disc_sample(n=6, size=(64, 64), radius=5, seed=3)], tmp / "data" / "tiles", "folder")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(models, "TextEncoder", lambda name: text_encoder())
        app = build_app(StudioConfig(checkpoints=tmp / "checkpoints", runs=tmp / "runs", outputs=tmp / "outputs",
                                     data_roots=(tmp / "data",)))
        app.cosyn_tiles = tmp / "data" / "tiles"  # for the editing test
        yield app


def _event(demo, name: str):
    return next(f for f in demo.fns.values() if f.name == name)


def _generate(demo, model: str, refine: bool, browser: str = "", confirmed: str | None = None, canvas=None,
              edit_source: dict | None = None, brush: dict | None = None) -> list[dict]:
    # a 64² canvas at 0.25 µm/px: the 0.5 µm/px models sample it at 32²
    layout = Layout(64, 64, CLASSES, [Point(20, 20, "epithelial"), Point(44, 40, "inflammatory")], 0.25, "colon")
    canvas = canvas or cv.new_canvas(layout)
    event = _event(demo, "on_generate")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(models, "TextEncoder", lambda name: text_encoder())
        session = SimpleNamespace(session_hash=f"{model}-{refine}")  # a bundle folder of its own
        form = GenerateForm(canvas, "", model, steps=2, guidance=2.0, sampler="ddim", seed=3, n=1, refine=refine,
                            opacity=0.5, items=[], background="neutral", browser=browser or f"{model}-{refine}",
                            confirmed=confirmed, edit_mode=edit_source is not None, edit_source=edit_source,
                            brush=brush)
        components = GenerateForm.components(demo.cosyn_synthesize)
        assert set(components.values()) == set(event.inputs)  # the form reads every input, by name
        values = {c: getattr(form, name) for name, c in components.items()}
        loading, *updates = event.fn(values, request=session)
    assert loading == {demo.cosyn_synthesize.status: "Loading the model…"}  # the status line says what runs
    for u in updates:
        convert_component_dict_to_list(list(event.outputs), u)  # raises for a key that is not an output
    return updates


@pytest.mark.parametrize(("model", "refine", "side", "stages"), [
    ("default", True, 64, "base + upsampler at 0.25 µm/px"),  # bicubic and sharpened to the canvas's µm/px
    ("default", False, 32, "base at 0.5 µm/px"),
])
def test_generate_says_which_stages_ran_and_shows_the_triple_at_its_size(demo, model, refine, side, stages):
    *previews, done = _generate(demo, model, refine)
    assert previews and all(set(p) == {*_results(demo), _status(demo)} for p in previews)
    assert all(p[_status(demo)].startswith("Sampling: step") for p in previews)
    # previews are served from files that go, with Gradio's copies, when the run ends
    shown = [Path(p[r]) for p in previews for r in _results(demo)]
    assert {f.parent.name for f in shown} == {"previews"} and not any(f.exists() for f in shown)
    assert done[_status(demo)] == f"Done: 1 result (seed 3), {stages}."
    assert {_picture(done[r]).shape for r in _results(demo)} == {(side, side, 3)}
    entries = next(v for v in done.values() if isinstance(v, list) and v and isinstance(v[0], dict))
    assert entries[0]["caption"].startswith("#1 · seed 3")
    assert isinstance(done[_canvas(demo)], np.ndarray)


def _picture(path: str) -> np.ndarray:
    """A result panel's picture: a PNG in the browser's folder (so Clear results can find Gradio's copy)."""
    return np.asarray(Image.open(path).convert("RGB"))


def _outputs_by_id(demo, name: str) -> dict:
    return {getattr(c, "elem_id", None): c for c in _event(demo, name).outputs}


def _results(demo) -> list:
    outs = _outputs_by_id(demo, "on_generate")
    return [outs[f"cosyn-out-{k}"] for k in ("image", "overlay", "instances", "dist")]


def _status(demo):
    return _outputs_by_id(demo, "on_generate")["cosyn-status"]


def _canvas(demo):
    return _outputs_by_id(demo, "on_generate")["cosyn-canvas"]


def test_choosing_a_model_and_clicking_the_canvas_update_by_name(demo):
    layout = Layout(64, 64, CLASSES, [Point(20, 20, "epithelial")], 0.25, "colon")
    view = ("neutral", None, None, True, "")  # background, last image, loaded tile, auto prompt, prompt
    load = next(f for f in demo.fns.values() if f.name == "on_model" and "load" in str(f.targets))
    updates = load.fn("second", cv.new_canvas(layout), *view)
    ordered = convert_component_dict_to_list(list(load.outputs), updates)
    assert "Ready: model `second`." in ordered and len(updates) == len(load.outputs)  # the model sets them all
    click = _event(demo, "on_click")
    zoom = cv.display_zoom(64, 64)
    after = click.fn(cv.new_canvas(layout), "spindle", *view, evt=SimpleNamespace(index=(40 * zoom, 40 * zoom)))
    convert_component_dict_to_list(list(click.outputs), after)
    canvas = next(v for k, v in after.items() if getattr(k, "elem_id", None) is None and isinstance(v, dict))
    assert [p.cls for p in cv.layout_of(canvas).points] == ["epithelial", "spindle"]


def test_the_train_tabs_live_view_sends_only_what_changed(demo):
    tick = _event(demo, "on_tick")
    first = tick.fn({"models": [], "preview": None, "metrics": None})  # the page knew no models yet
    convert_component_dict_to_list(list(tick.outputs), first)
    assert "No training job yet." in first.values()
    dropdowns = [v for v in first.values() if hasattr(v, "choices")]
    assert len(dropdowns) == 2  # the Synthesize tab's model list and the base model list both learn of them
    seen = next(v for v in first.values() if isinstance(v, dict) and "models" in v)
    assert seen["models"] == ["default", "second"]
    again = tick.fn(seen)
    assert len(again) == 3  # job line, log, what was seen: the model lists did not change


def test_user_errors_reach_the_browser_without_a_traceback_in_the_log(caplog):
    import logging

    import gradio as gr

    from cosyn.core.layout import LayoutError
    from cosyn.studio.errors import readable

    @readable
    def refuses():
        raise LayoutError("layout.json: point 3 lies outside the 64x64 canvas")

    @readable
    def buggy():
        return {}["missing"]

    with caplog.at_level(logging.INFO, logger="cosyn.studio"):
        with pytest.raises(gr.Error) as user:
            refuses()
        with pytest.raises(gr.Error) as bug:
            buggy()
    assert user.value.message == "layout.json: point 3 lies outside the 64x64 canvas"
    assert user.value.print_exception is False and bug.value.print_exception is False
    records = {r.getMessage(): r for r in caplog.records}
    assert records["refused: layout.json: point 3 lies outside the 64x64 canvas"].exc_info is None
    assert records["unexpected error in a studio handler"].exc_info is not None  # a bug keeps its traceback
    assert "KeyError" in bug.value.message


def test_results_survive_a_reload_and_go_only_on_clear_or_expiry(demo, tmp_path):
    from cosyn.studio import gallery

    done = _generate(demo, "default", False, browser="browser-a")[-1]
    entries = next(v for v in done.values() if isinstance(v, list) and v and isinstance(v[0], dict))
    folder = Path(entries[0]["dir"]).parent
    on_open = _event(demo, "on_open").fn
    # a reload hands back the id and the entries the browser kept: the same results, nothing deleted
    reopened = on_open("browser-a", entries, 0.5)
    assert [e["dir"] for e in next(v for v in reopened.values() if v and isinstance(v, list)
                                   and isinstance(v[0], dict))] == [entries[0]["dir"]]
    assert Path(entries[0]["image"]).is_file()
    # the result panels show the latest result again, from files in this browser's folder
    panels = [reopened[r] for r in _results(demo)]
    assert all(Path(p).parent == folder / "views" for p in panels)
    assert np.array_equal(_picture(panels[0]), _picture(done[_results(demo)[0]]))
    # another browser's id does not open this browser's results, and a new browser gets an id of its own
    assert all(v in ([], "browser-b", None) for v in on_open("browser-b", entries, 0.5).values())
    assert len(next(v for v in on_open("", [], 0.5).values() if isinstance(v, str))) == 32
    # Clear results deletes this browser's folder and empties the panels
    cleared = _event(demo, "on_clear").fn("browser-a", cv.new_canvas(Layout(64, 64, CLASSES, [])), "neutral")
    assert not folder.exists() and "Results cleared." in cleared.values()
    assert all(cleared[r] is None for r in _results(demo))
    # expiry: folders untouched for KEEP_DAYS go, newer ones stay
    old, new = tmp_path / ("a" * 32), tmp_path / ("b" * 32)
    for f in (old, new):
        (f / "001").mkdir(parents=True)
        (f / "001" / "image.png").write_bytes(b"x")
    os.utime(old / "001" / "image.png", (0, 0))
    os.utime(old / "001", (0, 0))
    os.utime(old, (0, 0))
    assert gallery.sweep_expired(tmp_path) == [old] and new.exists() and not old.exists()


def test_a_long_run_shows_its_estimate_and_starts_only_on_a_second_click(demo, monkeypatch):
    from cosyn.studio import generate_events

    monkeypatch.setattr(generate_events, "LONG_RUN_S", 0.0)  # every run counts as long
    (warned,) = _generate(demo, "default", False, browser="long")  # nothing sampled yet
    status = warned[_status(demo)]
    assert status.startswith("This run would take about ") and "Click Generate again to start it" in status
    key = next(v for v in warned.values() if v is not status)
    *_, done = _generate(demo, "default", False, browser="long", confirmed=key)
    assert done[_status(demo)].startswith("Done: 1 result")
    # a different request is estimated afresh
    (warned_again,) = _generate(demo, "second", False, browser="long", confirmed=key)
    assert "Click Generate again" in warned_again[_status(demo)]


def test_the_studio_edits_a_loaded_real_tile_and_keeps_the_rest(demo):
    from PIL import Image

    from cosyn.data.formats import read_dataset
    from cosyn.studio.synthesize_tab import REAL_TILE

    start = cv.new_canvas(Layout(64, 64, CLASSES, [], 0.25, "colon"))
    loaded = _event(demo, "on_dataset").fn(start, str(demo.cosyn_tiles), 0, "default", "neutral", None, None, True,
                                           "", "editor")
    assert REAL_TILE in [v for v in loaded.values() if isinstance(v, str)]  # the real tile under the points
    source = next(v for v in loaded.values() if isinstance(v, dict) and "folder" in v)
    canvas = next(v for v in loaded.values() if isinstance(v, dict) and "undo" in v)
    layout = cv.layout_of(canvas)
    edited = cv.new_canvas(Layout(layout.width, layout.height, layout.classes,
                                  [*layout.points, Point(58.0, 58.0, "inflammatory")], layout.mpp, layout.tissue))
    *previews, done = _generate(demo, "default", False, browser="editor", canvas=edited, edit_source=source)
    assert previews and all(p[_status(demo)].startswith("Sampling: step") for p in previews)  # live, as a generate
    assert done[_status(demo)].startswith("Done: 1 result")
    entries = next(v for v in done.values() if isinstance(v, list) and v and isinstance(v[0], dict))
    image = np.asarray(Image.open(entries[0]["image"]))
    tile = read_dataset(demo.cosyn_tiles)[0]
    yy, xx = np.indices((64, 64))
    outside = (xx - 58) ** 2 + (yy - 58) ** 2 > 32**2
    assert image.shape == tile.image.shape and np.array_equal(image[outside], tile.image[outside])
    with pytest.warns(UserWarning, match="Load a real tile first"):  # gr.Warning, outside a page
        (refused,) = _generate(demo, "default", False, browser="editor", edit_source={})
    assert refused[_status(demo)].startswith("Refused: Load a real tile first")


def test_a_loaded_example_is_drawn_without_the_previous_real_tile(demo):
    from cosyn.studio.synthesize_tab import NEUTRAL, REAL_TILE

    ui = demo.cosyn_synthesize
    start = cv.new_canvas(Layout(64, 64, CLASSES, [], 0.25, "colon"))
    loaded = _event(demo, "on_dataset").fn(start, str(demo.cosyn_tiles), 0, "default", "neutral", None, None, True,
                                           "", "stale")
    assert loaded[ui.background] == REAL_TILE
    example = _event(demo, "on_example").fn(loaded[ui.canvas_state], "colon_mixed_stroma", "default", REAL_TILE,
                                            None, loaded[ui.edit_source], True, "")
    convert_component_dict_to_list(list(_event(demo, "on_example").outputs), example)
    assert (example[ui.background], example[ui.edit_source], example[ui.edit_mode]) == (NEUTRAL, None, False)
    layout = cv.layout_of(example[ui.canvas_state])
    assert np.array_equal(example[ui.canvas_img], cv.render(layout))  # on the neutral background, not the tile


def test_forget_deletes_the_copies_gradio_made_to_serve_the_files(tmp_path):
    from gradio.processing_utils import save_file_to_cache

    from cosyn.studio.gallery import forget

    cache, results = tmp_path / "gradio", tmp_path / "browser"
    (results / "001_seed3_0").mkdir(parents=True)
    (results / "001_seed3_0" / "image.png").write_bytes(b"one")
    (results / "export.zip").write_bytes(b"two")
    (tmp_path / "other.png").write_bytes(b"three")  # another browser's file, served too
    served = [Path(save_file_to_cache(f, str(cache)))  # what Gradio does before it serves a file
              for f in (results / "001_seed3_0" / "image.png", results / "export.zip", tmp_path / "other.png")]
    assert all(f.is_file() for f in served)
    assert forget([results / "001_seed3_0", results / "export.zip"], cache) == 2
    assert [f.exists() for f in served] == [False, False, True] and not results.joinpath("export.zip").exists()
    assert not served[0].parent.exists()  # its hash folder too
