"""The layout contract (docs/architecture.md): what the canvas edits, the CLI reads, every export carries.

Coordinates are pixels, origin top-left, x = column.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cosyn.core.classes import ClassSet

MAX_CANVAS = 2048
MAX_POINTS = 20000
MAX_LAYOUT_BYTES = 50 * 10**6  # a QuPath export of MAX_POINTS polygon cells is about half of it


class LayoutError(ValueError):
    """A layout that breaks the contract; the message says what and where."""


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    cls: str


@dataclass
class Layout:
    width: int
    height: int
    classes: list[str]
    points: list[Point] = field(default_factory=list)
    mpp: float | None = None
    tissue: str | None = None
    prompt: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    # -- validation -------------------------------------------------------------------------
    def validate(self, max_canvas: int = MAX_CANVAS, max_points: int = MAX_POINTS, where: str = "layout") -> None:
        for name, v in (("width", self.width), ("height", self.height)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
                raise LayoutError(f"{where}: {name} must be an integer, got {v!r}")
            if not 8 <= v <= max_canvas:
                raise LayoutError(f"{where}: {name}={v!s:.40} is outside the allowed 8..{max_canvas} px")
        try:
            class_set = ClassSet(tuple(self.classes))
        except ValueError as e:
            raise LayoutError(f"{where}: bad class list: {e}") from None
        if len(self.points) > max_points:
            raise LayoutError(f"{where}: {len(self.points)} points exceed the limit of {max_points}")
        if self.mpp is not None and not (0.01 <= float(self.mpp) <= 10):
            raise LayoutError(f"{where}: mpp={self.mpp} is not a plausible microns-per-pixel value")
        for i, p in enumerate(self.points):
            if not (np.isfinite(p.x) and np.isfinite(p.y)):
                raise LayoutError(f"{where}: point {i} has a non-finite coordinate ({p.x}, {p.y})")
            if not (0 <= p.x < self.width and 0 <= p.y < self.height):
                raise LayoutError(
                    f"{where}: point {i} at ({p.x:g}, {p.y:g}) lies outside the "
                    f"{self.width}x{self.height} canvas"
                )
            if p.cls.strip().lower() not in class_set.names[1:]:
                raise LayoutError(
                    f"{where}: point {i} has unknown class {p.cls!r}; known: {list(class_set.names[1:])}"
                )

    def density(self) -> float | None:
        """Nuclei per 100 × 100 µm (None without an mpp)."""
        if not self.mpp:
            return None
        return len(self.points) / (self.width * self.mpp * self.height * self.mpp) * 1e4

    @property
    def class_set(self) -> ClassSet:
        return ClassSet(tuple(self.classes))

    # -- array views --------------------------------------------------------------------------
    def xy(self) -> np.ndarray:
        """(N, 2) float array of (x, y)."""
        return np.array([[p.x, p.y] for p in self.points], dtype=np.float64).reshape(-1, 2)

    def class_ids(self) -> np.ndarray:
        cs = self.class_set
        return np.array([cs.id_of(p.cls) for p in self.points], dtype=np.int32)

    def counts(self) -> dict[str, int]:
        out = {n: 0 for n in self.classes[1:]}
        for p in self.points:
            out[p.cls.strip().lower()] += 1
        return out

    @classmethod
    def from_arrays(
        cls,
        width: int,
        height: int,
        classes: ClassSet | list[str],
        xy: np.ndarray,
        class_ids: np.ndarray,
        **kw: Any,
    ) -> Layout:
        names = list(classes.names) if isinstance(classes, ClassSet) else list(classes)
        pts = [Point(float(x), float(y), names[int(c)]) for (x, y), c in zip(xy, class_ids, strict=True)]
        return cls(width=int(width), height=int(height), classes=names, points=pts, **kw)

    def rescaled(self, width: int, height: int, mpp: float | None) -> Layout:
        """The same field of view on a `width` x `height` canvas. x = c is the centre of pixel c, so
        coordinates scale about pixel centres, (x + 0.5) * s - 0.5, as the resampled images do."""
        sx, sy = width / self.width, height / self.height
        pts = [Point(float(np.clip((p.x + 0.5) * sx - 0.5, 0, width - 1e-3)),
                     float(np.clip((p.y + 0.5) * sy - 0.5, 0, height - 1e-3)), p.cls) for p in self.points]
        return Layout(width, height, list(self.classes), pts, mpp, self.tissue, self.prompt)

    # -- JSON ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "width": self.width,
            "height": self.height,
            "mpp": self.mpp,
            "tissue": self.tissue,
            "classes": list(self.classes),
            "points": [{"x": p.x, "y": p.y, "cls": p.cls} for p in self.points],
        }
        if self.prompt:
            d["prompt"] = self.prompt
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, d: Any, where: str = "layout") -> Layout:
        if not isinstance(d, dict):
            raise LayoutError(f"{where}: expected a JSON object, got {type(d).__name__}")
        missing = [k for k in ("width", "height", "classes") if k not in d]
        if missing:
            raise LayoutError(f"{where}: missing key(s) {missing}")
        pts_raw = d.get("points", [])
        if not isinstance(pts_raw, list):
            raise LayoutError(f"{where}: 'points' must be a list")
        pts = []
        for i, p in enumerate(pts_raw):
            try:
                pts.append(Point(_number(p["x"]), _number(p["y"]), _text(p["cls"])))
            except (KeyError, TypeError, ValueError, OverflowError):
                raise LayoutError(
                    f"{where}: point {i} must be {{'x': number, 'y': number, 'cls': name}}, got {p!r:.200}"
                ) from None
        classes = d["classes"]
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise LayoutError(f"{where}: 'classes' must be a list of names")
        mpp = d.get("mpp")
        try:
            mpp = None if mpp is None else _number(mpp)
        except (TypeError, OverflowError):
            raise LayoutError(f"{where}: mpp must be a number, got {mpp!r:.80}") from None
        for key in ("tissue", "prompt"):
            if d.get(key) is not None and not isinstance(d[key], str):
                raise LayoutError(f"{where}: {key} must be text, got {type(d[key]).__name__}")
        try:
            return cls(
                width=d["width"],
                height=d["height"],
                classes=[c.strip().lower() for c in classes],
                points=pts,
                mpp=mpp,
                tissue=d.get("tissue"),
                prompt=d.get("prompt") or None,
            )
        except LayoutError as e:  # name the file rather than the generic "layout"
            raise LayoutError(f"{where}: {str(e).removeprefix('layout: ')}") from None

    @classmethod
    def load(cls, path: str | Path) -> Layout:
        path = Path(path)
        return cls.from_dict(read_json(path), where=str(path))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())


def _number(v: Any) -> float:
    """A JSON number as a float; text, booleans and integers beyond float range are refused."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"not a number: {v!r:.40}")
    return float(v)  # OverflowError for an integer like 1e400 written out


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"not text: {v!r:.40}")
    return v


def read_json(path: Path) -> Any:
    """A layout file's JSON; every way it can fail is a LayoutError that names the file. The read is
    bounded by MAX_LAYOUT_BYTES, so a huge file (or /dev/zero) is refused rather than read whole."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_LAYOUT_BYTES + 1)
    except FileNotFoundError:
        raise LayoutError(f"{path}: no such file") from None
    except OSError as e:
        raise LayoutError(f"{path}: cannot read it ({e.strerror or e})") from None
    if len(raw) > MAX_LAYOUT_BYTES:
        raise LayoutError(f"{path}: larger than the {MAX_LAYOUT_BYTES // 10**6} MB a layout file may have")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise LayoutError(f"{path}: not a text file, so not JSON") from None
    except json.JSONDecodeError as e:
        raise LayoutError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise LayoutError(f"{path}: JSON nested too deeply") from None
    except ValueError:  # the one other failure: Python refuses to read integers of over 4300 digits
        raise LayoutError(f"{path}: holds a number of more than {sys.get_int_max_str_digits()} digits, which no "
                          "layout value needs") from None
