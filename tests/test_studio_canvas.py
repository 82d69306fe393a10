"""Studio canvas: clicks add and remove points, undo/redo, exact pixel positions, counts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cosyn.core.classes import CONSEP
from cosyn.core.layout import Layout, LayoutError, Point
from cosyn.studio import canvas as cv


def _canvas(width: int = 64, height: int = 64, points: list[Point] | None = None) -> cv.Canvas:
    return cv.new_canvas(Layout(width, height, CONSEP.to_list(), points or [], 0.25, "colon"))


def _xy(canvas: cv.Canvas) -> list[tuple[float, float, str]]:
    return [(p.x, p.y, p.cls) for p in cv.layout_of(canvas).points]


def test_click_adds_a_point_of_the_selected_class_and_a_click_on_it_removes_it():
    c = cv.click(_canvas(), 10, 20, "epithelial", hit_radius=2)
    c = cv.click(c, 40, 40, "Inflammatory", hit_radius=2)
    assert _xy(c) == [(10, 20, "epithelial"), (40, 40, "inflammatory")]
    c = cv.click(c, 11.5, 20.5, "spindle", hit_radius=2)  # within the radius of the first point
    assert _xy(c) == [(40, 40, "inflammatory")]
    c = cv.click(c, 43, 40, "spindle", hit_radius=2)  # just outside: a new point
    assert len(_xy(c)) == 2


def test_click_rejects_unknown_class_and_the_point_limit(monkeypatch):
    with pytest.raises(LayoutError, match="not in this canvas' classes"):
        cv.click(_canvas(), 5, 5, "neutrophil", hit_radius=2)
    monkeypatch.setattr(cv, "MAX_POINTS", 1)
    c = cv.click(_canvas(), 5, 5, "other", hit_radius=2)
    with pytest.raises(LayoutError, match="maximum of 1 points"):
        cv.click(c, 30, 30, "other", hit_radius=2)


def test_undo_redo_walk_the_history_both_ways():
    states = [_canvas()]
    for x, y, cls in ((5, 5, "other"), (20, 5, "spindle"), (5, 5, "other")):  # the last click removes
        states.append(cv.click(states[-1], x, y, cls, hit_radius=2))
    c = states[-1]
    for expected in reversed(states[:-1]):
        c = cv.undo(c)
        assert _xy(c) == _xy(expected)
    assert cv.undo(c) == c  # nothing left to undo
    for expected in states[1:]:
        c = cv.redo(c)
        assert _xy(c) == _xy(expected)
    assert cv.redo(c) == c


def test_a_new_edit_drops_the_redo_branch_and_history_is_capped(monkeypatch):
    c = cv.click(_canvas(), 5, 5, "other", hit_radius=2)
    c = cv.click(cv.undo(c), 9, 9, "other", hit_radius=2)
    assert c["redo"] == []
    monkeypatch.setattr(cv, "HISTORY", 3)
    for i in range(6):
        c = cv.click(c, 2 + 5 * i, 30, "other", hit_radius=1)
    assert len(c["undo"]) == 3


def test_replace_and_clear_are_undoable_and_the_canvas_is_json():
    c = cv.click(_canvas(), 5, 5, "other", hit_radius=2)
    bigger = Layout(128, 96, CONSEP.to_list(), [Point(100, 90, "spindle")], 0.25, "colon")
    c = cv.replace(c, bigger)
    assert cv.layout_of(c).width == 128
    c = cv.clear(c)
    assert _xy(c) == [] and cv.layout_of(c).width == 128
    c = cv.undo(cv.undo(c))
    assert _xy(c) == [(5, 5, "other")] and cv.layout_of(c).width == 64
    assert json.loads(json.dumps(c)) == c  # what gr.BrowserState stores


@pytest.mark.parametrize("side", [64, 256, 512, 1000])
def test_rendered_points_sit_exactly_where_display_mapping_says(side):
    zoom = cv.display_zoom(side, side)
    points = [Point(3, 5, "epithelial"), Point(side / 2, side - 7, "inflammatory"), Point(20.37, 9.81, "spindle")]
    img = cv.render(Layout(side, side, CONSEP.to_list(), points, 0.25))
    assert img.shape == (side * zoom, side * zoom, 3)
    for p in points:
        colour = CONSEP.colours[CONSEP.id_of(p.cls)]
        rows, cols = np.nonzero((img == colour).all(axis=2))
        dx, dy = cv.to_display(p.x, p.y, zoom)
        near = np.hypot(cols - dx, rows - dy) <= cv.POINT_RADIUS + 1
        assert near.sum() > 10
        assert abs(cols[near].mean() - dx) <= 0.25 and abs(rows[near].mean() - dy) <= 0.25
        # and a click on the dot's centre pixel maps back onto the point
        x, y = cv.to_layout(round(dx), round(dy), zoom, side, side)
        assert abs(x - p.x) <= 0.5 and abs(y - p.y) <= 0.5


def test_display_mapping_round_trips_and_stays_on_the_canvas():
    for zoom in (1, 2, 3, 8):
        for x in (0, 1, 17, 63):
            col, row = cv.to_display(x, x, zoom)
            assert cv.to_layout(col, row, zoom, 64, 64) == (x, x)
    assert cv.to_layout(0, 0, 8, 64, 64) == (0.0, 0.0)
    x, y = cv.to_layout(10_000, 10_000, 2, 64, 32)
    assert x < 64 and y < 32


def test_render_over_an_image_stretches_it_over_the_field_of_view():
    background = np.zeros((32, 32, 3), np.uint8)
    background[:, 16:] = 200
    img = cv.render(Layout(64, 64, CONSEP.to_list(), [], 0.25), background)
    zoom = cv.display_zoom(64, 64)
    assert img.shape == (64 * zoom, 64 * zoom, 3)
    assert img[10, 10].max() == 0 and img[10, -10].min() == 200


def test_counts_and_legend_follow_the_layout():
    c = _canvas()
    for i, cls in enumerate(["epithelial", "epithelial", "spindle"]):
        c = cv.click(c, 5 + 10 * i, 5, cls, hit_radius=2)
    html = cv.legend_html(cv.layout_of(c))
    assert "epithelial: <b>2</b>" in html and "spindle: <b>1</b>" in html and "total: <b>3</b>" in html
    assert "other: <b>0</b>" in html
    assert "rgb(255,0,0)" in html  # epithelial's colour
    assert "64×64 px at 0.25 µm/px (16×16 µm)" in html


def test_conform_and_resize_report_what_they_drop():
    layout = Layout(64, 64, CONSEP.to_list(), [Point(5, 5, "spindle"), Point(50, 50, "epithelial")], 0.25)
    pannuke = ["background", "neoplastic", "inflammatory", "connective", "dead", "epithelial"]
    out, dropped = cv.conform_classes(layout, pannuke)
    assert out.classes == pannuke and [p.cls for p in out.points] == ["epithelial"] and dropped == {"spindle": 1}
    small, cut = cv.resized(layout, 32, 32)
    assert (small.width, small.height, cut) == (32, 32, 1)


def test_the_prompt_follows_the_layout_and_keeps_one_the_layout_brings():
    from cosyn.data.targets import structure_prompt
    from cosyn.studio.canvas_events import show

    pts = [Point(10.0, 10.0, "epithelial"), Point(30.0, 30.0, "inflammatory")]
    plain = Layout(64, 64, CONSEP.to_list(), pts, 0.25, "colon")
    own = Layout(64, 64, CONSEP.to_list(), pts, 0.25, "colon", prompt="my own words")
    typed = "typed by hand"
    assert show(cv.new_canvas(plain), "neutral", None, None, True, typed).prompt == structure_prompt(plain)
    edited = cv.click(cv.new_canvas(own), 50, 50, "spindle", 1.0)
    assert show(edited, "neutral", None, None, True, typed).prompt == "my own words"
    assert show(cv.new_canvas(own), "neutral", None, None, False, typed).prompt == typed


def test_a_layout_without_a_scale_takes_the_models_on_the_canvas():
    from cosyn.studio.canvas_events import fitted_to
    from cosyn.studio.models import ModelView

    mv = ModelView(CONSEP.to_list(), ["colon"], 256, 0.5)
    assert fitted_to(Layout(64, 64, CONSEP.to_list(), [], None), mv).mpp == 0.5
    assert fitted_to(Layout(64, 64, CONSEP.to_list(), [], 0.25), mv).mpp == 0.25
