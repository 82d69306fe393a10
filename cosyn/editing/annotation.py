"""The real tile an edit starts from: an image and its annotation, in any of the forms pathologists
have one: a HoVer-Net `.mat`, a QuPath GeoJSON of nucleus outlines, or an instance map with a class
map (PNG or TIFF, as `cosyn prepare` writes them)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cosyn.core.classes import ClassSet
from cosyn.data.formats.folder import read_maps_pair
from cosyn.data.formats.hovernet import read_hovernet_pair
from cosyn.data.formats.qupath import read_qupath_pair
from cosyn.data.sample import DataError, Sample

ANNOTATION_HELP = ("a HoVer-Net .mat (inst_map, type_map, inst_type, inst_centroid), a QuPath GeoJSON of nucleus "
                   "outlines, or an instance map and a class map (PNG/TIFF, in that order)")
MAP_SUFFIXES = (".png", ".tif", ".tiff")


def read_annotated_tile(image: str | Path, annotation: Sequence[str | Path], classes: ClassSet, mpp: float,
                        tissue: str | None = None) -> Sample:
    """The tile `image` with its `annotation` (one file or two, see ANNOTATION_HELP)."""
    files = [Path(a) for a in annotation]
    names = [f.name for f in files]
    suffixes = [f.suffix.lower() for f in files]
    if len(files) == 1 and suffixes[0] == ".mat":
        return read_hovernet_pair(image, files[0], classes, mpp, tissue)
    if len(files) == 1 and suffixes[0] in (".geojson", ".json"):
        return read_qupath_pair(image, files[0], classes, mpp, tissue)
    if len(files) == 2 and all(s in MAP_SUFFIXES for s in suffixes):
        return read_maps_pair(image, files[0], files[1], classes, mpp, tissue)
    if len(files) == 1 and suffixes[0] in MAP_SUFFIXES:
        raise DataError(f"{names[0]}: an instance map needs its class map beside it (two files: instances, "
                        "then classes)")
    raise DataError(f"{', '.join(names) or 'no annotation'}: the annotation must be {ANNOTATION_HELP}")
