"""Where layouts and prompts come from: shipped examples and presets, dataset samples, uploads."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from cosyn import ASSETS
from cosyn.core.layout import Layout, LayoutError
from cosyn.data.formats import read_dataset
from cosyn.data.sample import DataError, Sample
from cosyn.data.targets import layout_from_sample
from cosyn.io.layout_io import load_any, save_any
from cosyn.studio.canvas import conform_classes, resized
from cosyn.studio.paths import check_upload

EXAMPLES_DIR = ASSETS / "layouts"
PRESETS_PATH = ASSETS / "presets.json"
LAYOUT_FORMATS = {"JSON layout": ".json", "QuPath GeoJSON": ".geojson", "HoVer-Net .mat": ".mat"}


def example_layouts() -> dict[str, Path]:
    return {p.stem: p for p in sorted(EXAMPLES_DIR.glob("*.json"))}


@lru_cache(maxsize=1)
def presets() -> dict[str, str]:
    return {p["name"]: p["prompt"] for p in json.loads(PRESETS_PATH.read_text())["presets"]}


def fit(layout: Layout, classes: Sequence[str], side_limit: int) -> tuple[Layout, list[str]]:
    """The layout in the model's class set and within the canvas limit; notes say what was lost."""
    notes = []
    out, dropped = conform_classes(layout, classes)
    if dropped:
        lost = ", ".join(f"{n} × {c}" for c, n in dropped.items())
        notes.append(f"dropped points of classes the model does not know: {lost}")
    if out.width > side_limit or out.height > side_limit:
        out, cut = resized(out, min(out.width, side_limit), min(out.height, side_limit))
        notes.append(f"cropped to {out.width}×{out.height} px, the model's limit ({cut} points outside)")
    return out, notes


def dataset_tile(folder: Path, index: int, fmt: str = "auto") -> Sample:
    samples = read_dataset(folder, fmt)
    if not 0 <= index < len(samples):
        raise DataError(f"{folder}: there is no sample {index}; the dataset has {len(samples)} (0..{len(samples) - 1})")
    return samples[index]


def dataset_sample(folder: Path, index: int, fmt: str = "auto") -> Layout:
    return layout_from_sample(dataset_tile(folder, index, fmt))


def pasted_layout(text: str, max_bytes: int, where: str) -> Layout:
    """A layout from JSON text typed or posted into the studio, refused above the upload limit
    before it is parsed (the same limit a file upload has)."""
    text = text or ""
    if len(text.encode()) > max_bytes:
        raise LayoutError(f"{where} is over the upload limit of {max_bytes / 2**20:g} MB")
    try:
        data = json.loads(text or "null")
    except json.JSONDecodeError as e:
        raise LayoutError(f"{where} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise LayoutError(f"{where}: JSON nested too deeply") from None
    return Layout.from_dict(data, where=where)


def uploaded_layout(path: str | Path, current: Layout, default_class: str, max_bytes: int) -> Layout:
    """A layout from an uploaded .json, .geojson or .mat. GeoJSON has no canvas size and neither
    format has a scale or tissue, so they take the current canvas's; unclassified objects take
    the selected class."""
    path = check_upload(path, max_bytes)
    if path.suffix.lower() not in LAYOUT_FORMATS.values():
        raise LayoutError(f"{path.name}: upload a .json layout, a QuPath .geojson or a HoVer-Net .mat")
    try:
        return load_any(path, classes=current.classes, width=current.width, height=current.height,
                        default_class=default_class, mpp=current.mpp, tissue=current.tissue)
    except LayoutError as e:  # the user knows the file by its name, not by the server's upload folder
        raise LayoutError(str(e).replace(str(path), path.name)) from None


def layout_file(layout: Layout, fmt: str, folder: Path) -> Path:
    if fmt not in LAYOUT_FORMATS:
        raise LayoutError(f"unknown layout format {fmt!r}; choose one of {list(LAYOUT_FORMATS)}")
    folder.mkdir(parents=True, exist_ok=True)
    return save_any(layout, folder / f"layout_{len(layout.points)}_points{LAYOUT_FORMATS[fmt]}")
