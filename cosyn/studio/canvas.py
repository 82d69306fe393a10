"""The layout canvas as pure functions over plain data (what gr.BrowserState stores).

A canvas is `{"layout": Layout.to_dict(), "undo": [op, ...], "redo": [op, ...]}`. An op is
`{"op": "add" | "remove", "index": i, "point": {...}}` for a click, or `{"op": "set",
"before": layout dict, "after": layout dict}` for whole-layout changes (random, load, clear,
resize). Clicks store one point, not a snapshot, so a long editing session stays small
enough for the browser's localStorage.

Display. The canvas picture is the layout magnified by an integer `zoom`, so a 256 px canvas
is not a postage stamp. Layout pixel c (centre x = c) covers display pixels
[c·zoom, c·zoom + zoom - 1]; its centre is display pixel c·zoom + (zoom - 1) / 2.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from cosyn.core.classes import ClassSet
from cosyn.core.layout import MAX_POINTS, Layout, LayoutError, Point

Canvas = dict[str, Any]

HISTORY = 200  # undo steps kept
DISPLAY_TARGET = 512  # small canvases are magnified up to about this many display pixels
POINT_RADIUS = 4.0  # display px
HIT_MARGIN = 2.0  # display px beyond the drawn dot that still counts as clicking it
BACKGROUND = (238, 236, 240)
GRID_UM = 10.0
GRID_COLOUR = (222, 219, 226)


# -- the canvas record ---------------------------------------------------------------------------
def new_canvas(layout: Layout) -> Canvas:
    return {"layout": layout.to_dict(), "undo": [], "redo": []}


def layout_of(canvas: Canvas) -> Layout:
    return Layout.from_dict(canvas["layout"], where="canvas")


def _with_op(canvas: Canvas, layout: Layout, op: dict[str, Any]) -> Canvas:
    undo = [*canvas["undo"], op][-HISTORY:]
    return {"layout": layout.to_dict(), "undo": undo, "redo": []}


def _apply(layout_dict: dict[str, Any], op: dict[str, Any], forward: bool) -> dict[str, Any]:
    if op["op"] == "set":
        return copy.deepcopy(op["after"] if forward else op["before"])
    out = copy.deepcopy(layout_dict)
    adds = (op["op"] == "add") == forward
    if adds:
        out["points"].insert(op["index"], dict(op["point"]))
    else:
        del out["points"][op["index"]]
    return out


def undo(canvas: Canvas) -> Canvas:
    if not canvas["undo"]:
        return canvas
    op = canvas["undo"][-1]
    return {"layout": _apply(canvas["layout"], op, forward=False), "undo": canvas["undo"][:-1],
            "redo": [*canvas["redo"], op]}


def redo(canvas: Canvas) -> Canvas:
    if not canvas["redo"]:
        return canvas
    op = canvas["redo"][-1]
    return {"layout": _apply(canvas["layout"], op, forward=True), "undo": [*canvas["undo"], op],
            "redo": canvas["redo"][:-1]}


def replace(canvas: Canvas, layout: Layout) -> Canvas:
    """An undoable whole-layout change."""
    before = canvas["layout"]
    after = layout.to_dict()
    if before == after:
        return canvas
    return _with_op(canvas, layout, {"op": "set", "before": before, "after": after})


def clear(canvas: Canvas) -> Canvas:
    layout = layout_of(canvas)
    return replace(canvas, Layout(layout.width, layout.height, layout.classes, [], layout.mpp, layout.tissue))


# -- clicks ------------------------------------------------------------------------------------------
def hit(layout: Layout, x: float, y: float, radius: float) -> int | None:
    """Index of the point nearest (x, y) within `radius`, if any."""
    if not layout.points:
        return None
    d = np.hypot(*(layout.xy() - (x, y)).T)
    i = int(np.argmin(d))
    return i if d[i] <= radius else None


def click(canvas: Canvas, x: float, y: float, cls: str, hit_radius: float) -> Canvas:
    """Remove the point under (x, y), or add one of class `cls` there."""
    layout = layout_of(canvas)
    i = hit(layout, x, y, hit_radius)
    if i is not None:
        removed = layout.points[i]
        points = layout.points[:i] + layout.points[i + 1:]
        op = {"op": "remove", "index": i, "point": {"x": removed.x, "y": removed.y, "cls": removed.cls}}
    else:
        if len(layout.points) >= MAX_POINTS:
            raise LayoutError(f"the canvas already holds the maximum of {MAX_POINTS} points")
        if cls.strip().lower() not in layout.classes[1:]:
            raise LayoutError(f"class {cls!r} is not in this canvas' classes {layout.classes[1:]}")
        new = Point(float(x), float(y), cls.strip().lower())
        points = [*layout.points, new]
        op = {"op": "add", "index": len(layout.points), "point": {"x": new.x, "y": new.y, "cls": new.cls}}
    edited = Layout(layout.width, layout.height, layout.classes, points, layout.mpp, layout.tissue, layout.prompt)
    return _with_op(canvas, edited, op)


# -- layout transforms ----------------------------------------------------------------------------
def conform_classes(layout: Layout, classes: Sequence[str]) -> tuple[Layout, dict[str, int]]:
    """The layout in another class set, matched by name; returns the points dropped per class."""
    names = [c.strip().lower() for c in classes]
    kept = [p for p in layout.points if p.cls.strip().lower() in names[1:]]
    dropped: dict[str, int] = {}
    for p in layout.points:
        if p.cls.strip().lower() not in names[1:]:
            dropped[p.cls] = dropped.get(p.cls, 0) + 1
    return Layout(layout.width, layout.height, names, kept, layout.mpp, layout.tissue, layout.prompt), dropped


def resized(layout: Layout, width: int, height: int) -> tuple[Layout, int]:
    """The canvas grown or cropped (top-left anchored, no rescaling); returns the points cut off."""
    kept = [p for p in layout.points if p.x < width and p.y < height]
    out = Layout(width, height, layout.classes, kept, layout.mpp, layout.tissue, layout.prompt)
    return out, len(layout.points) - len(kept)


# -- display ------------------------------------------------------------------------------------------
def display_zoom(width: int, height: int) -> int:
    return max(1, DISPLAY_TARGET // max(width, height))


def to_display(x: float, y: float, zoom: int) -> tuple[float, float]:
    """Display-pixel index of the layout position (x, y)."""
    off = (zoom - 1) / 2
    return x * zoom + off, y * zoom + off


def to_layout(col: int, row: int, zoom: int, width: int, height: int) -> tuple[float, float]:
    """Layout position of the display pixel (col, row), kept inside the canvas."""
    off = (zoom - 1) / 2
    x = min(max((col - off) / zoom, 0.0), width - 1e-3)
    y = min(max((row - off) / zoom, 0.0), height - 1e-3)
    return round(x, 3), round(y, 3)


def hit_radius(zoom: int) -> float:
    """Layout px within which a click removes a point: the dot's drawn size plus a margin."""
    return (POINT_RADIUS + HIT_MARGIN) / zoom


def _dot_box(cx: float, cy: float, r: float) -> list[int]:
    """Pixel bounding box of a dot centred on (cx, cy), to within a quarter display pixel.

    PIL draws an ellipse inscribed in the inclusive pixel box [x0, x1], centred on
    (x0 + x1) / 2, so that sum is chosen as 2·cx rounded; float boxes would be truncated.
    """
    box = []
    for c in (cx, cy):
        twice = round(2 * c)
        lo = math.floor(twice / 2 - r)
        box.append((lo, twice - lo))
    (x0, x1), (y0, y1) = box
    return [x0, y0, x1, y1]


def _neutral(width: int, height: int, zoom: int, mpp: float | None) -> Image.Image:
    img = Image.new("RGB", (width * zoom, height * zoom), BACKGROUND)
    if mpp:  # a faint 10 µm grid gives the user the scale of a nucleus
        draw = ImageDraw.Draw(img)
        step = GRID_UM / mpp * zoom
        for i in range(1, int(width * zoom / step) + 1):
            draw.line([(i * step, 0), (i * step, height * zoom)], fill=GRID_COLOUR)
        for i in range(1, int(height * zoom / step) + 1):
            draw.line([(0, i * step), (width * zoom, i * step)], fill=GRID_COLOUR)
    return img


def render(layout: Layout, background: np.ndarray | None = None) -> np.ndarray:
    """The canvas picture: points in class colours over a neutral grid or over `background`
    (any size: it is stretched over the canvas' field of view)."""
    zoom = display_zoom(layout.width, layout.height)
    size = (layout.width * zoom, layout.height * zoom)
    if background is None:
        img = _neutral(layout.width, layout.height, zoom, layout.mpp)
    else:
        img = Image.fromarray(background).convert("RGB").resize(size, Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    colours = layout.class_set.colours
    for p, c in zip(layout.points, layout.class_ids(), strict=True):
        box = _dot_box(*to_display(p.x, p.y, zoom), POINT_RADIUS)
        draw.ellipse(box, fill=tuple(colours[int(c)]), outline=(20, 20, 20))
    return np.asarray(img)


def legend_html(layout: Layout) -> str:
    """Class swatches with live counts, and the canvas' physical size."""
    counts = layout.counts()
    cs: ClassSet = layout.class_set
    items = []
    for name, colour in zip(cs.names[1:], cs.colours[1:], strict=True):
        rgb = "rgb({},{},{})".format(*colour)
        items.append(f'<span class="cosyn-legend-item" data-class="{name}">'
                     f'<span class="cosyn-swatch" style="background:{rgb}"></span>{name}: <b>{counts[name]}</b></span>')
    size = f"{layout.width}×{layout.height} px"
    if layout.mpp:
        size += (f" at {layout.mpp:g} µm/px ({layout.width * layout.mpp:g}×{layout.height * layout.mpp:g} µm); "
                 f"grid {GRID_UM:g} µm")
    total = sum(counts.values())
    return (f'<div class="cosyn-legend">{"".join(items)}<span class="cosyn-legend-item">total: <b>{total}</b>'
            f'</span></div><div class="cosyn-canvas-size">{size}</div>')
