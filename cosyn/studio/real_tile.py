"""The real tile an edit starts from, in the studio: loaded from a dataset or uploaded with its
annotation, kept beside the browser's results, and the brushed region to regenerate.

A loaded tile is written to the browser's folder in the normalised folder format, whatever it came
from, so the edit reads back one kind of file and a dataset changed on disk meanwhile cannot change
the tile being edited.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cosyn.core.classes import ClassSet
from cosyn.core.layout import Layout
from cosyn.core.resample import resample_labels
from cosyn.data.formats import read_folder, write_folder
from cosyn.data.sample import DataError, Sample
from cosyn.editing.annotation import read_annotated_tile
from cosyn.studio.paths import check_upload, confine

TILES = "tiles"


def keep_tile(tile: Sample, session: Path) -> dict[str, str]:
    """`tile` saved under the browser's folder `session`; the source the edit later reads."""
    folder = session / TILES / uuid.uuid4().hex
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_folder([tile], folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return {"folder": str(folder), "name": tile.name, "image": str(folder / "images" / f"{tile.name}.png")}


def kept_tile(source: dict[str, Any] | None, outputs: Path) -> Sample:
    """The tile `keep_tile` saved (only from inside the studio's outputs)."""
    if not source:
        raise DataError("Load a real tile first (a dataset sample or a real tile, below the canvas), or untick "
                        "Edit.")
    return read_folder(confine(source["folder"], [outputs], "kept tile"))[0]


def uploaded_tile(image: str | Path | None, annotation: Sequence[str | Path] | None, canvas: Layout,
                  classes: ClassSet, max_bytes: int) -> Sample:
    """An uploaded image and its annotation, at the canvas's µm/px and tissue."""
    if not image or not annotation:
        raise DataError("Upload the tile's image and its annotation (a HoVer-Net .mat, a QuPath GeoJSON, or an "
                        "instance map and a class map).")
    files = [check_upload(f, max_bytes) for f in (image, *annotation)]
    try:
        return read_annotated_tile(files[0], files[1:], classes, canvas.mpp, canvas.tissue)
    except DataError as e:  # the user knows the files by their names, not by the server's upload folder
        message = str(e)
        for f in files:
            message = message.replace(str(f), f.name)
        raise DataError(message) from None


def brush_mask(editor: dict[str, Any] | None, shape: tuple[int, int]) -> np.ndarray | None:
    """Where the user painted on the brush editor, at `shape`; None when nothing is painted."""
    layers = [np.asarray(layer) for layer in (editor or {}).get("layers") or [] if layer is not None]
    painted = [layer[..., 3] > 0 for layer in layers if layer.ndim == 3 and layer.shape[2] == 4]
    if not painted or not any(p.any() for p in painted):
        return None
    mask = np.logical_or.reduce(painted)
    if mask.shape != shape:
        mask = resample_labels(mask.astype(np.uint8), *shape) > 0
    return mask
