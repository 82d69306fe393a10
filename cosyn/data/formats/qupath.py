"""One image and its QuPath GeoJSON ("Export objects" of detections or cells): the nucleus outlines
rasterised into instance and class maps. This is how a tile annotated in QuPath comes to be edited.

QuPath puts pixel (row r, column c) at [c, c+1] x [r, r+1]; a pixel belongs to a nucleus when its
centre lies inside the outline, so what `cosyn.io.export` writes reads back as the same pixels.
Where outlines overlap, the later feature wins, as when QuPath draws them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from skimage.draw import polygon

from cosyn.core.classes import ClassSet
from cosyn.core.layout import LayoutError, read_json
from cosyn.data.formats.common import PathLike, _build_sample, _fail, _image, _read_raster
from cosyn.data.sample import Sample
from cosyn.io.export import CORNER_OFFSET
from cosyn.io.layout_io import nucleus_outlines


def read_qupath_pair(image_file: PathLike, geojson_file: PathLike, classes: ClassSet, mpp: float | None,
                     tissue: str | None = None, default_class: str | None = None) -> Sample:
    """The image and the nuclei its GeoJSON outlines; `default_class` names unclassified ones."""
    image_file, geojson_file = Path(image_file), Path(geojson_file)
    image = _image(_read_raster(image_file, rgb=True), image_file)
    try:
        outlines = nucleus_outlines(read_json(geojson_file), classes, str(geojson_file), default_class)
    except LayoutError as e:
        raise _fail(geojson_file, str(e).removeprefix(f"{geojson_file}: ")) from None
    inst_map = np.zeros(image.shape[:2], np.int32)
    class_map = np.zeros(image.shape[:2], np.uint8)
    for inst_id, (rings, cls) in enumerate(outlines, start=1):
        for ring in rings:
            rows, cols = polygon(ring[:, 1] - CORNER_OFFSET, ring[:, 0] - CORNER_OFFSET, image.shape[:2])
            inst_map[rows, cols] = inst_id
            class_map[rows, cols] = classes.id_of(cls)
    if outlines and not inst_map.any():
        raise _fail(geojson_file, f"none of its {len(outlines)} nucleus outlines lies inside the "
                                  f"{image.shape[1]}x{image.shape[0]} image {image_file.name}")
    return _build_sample(image_file.stem, (image_file, geojson_file, geojson_file), image, inst_map, class_map,
                         classes, mpp=mpp, tissue=tissue)
