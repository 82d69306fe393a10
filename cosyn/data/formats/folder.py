"""The normalised folder format: `images/`, `instances/`, `classes/` with the same stems, PNG or TIFF
(images may also be JPEG), plus an optional `classes.json`: {"classes": [...], "tissue": ..., "mpp":
..., "sources": {stem: source}, "tissues": {stem: tissue}}; "tissues" is only written when tissue
varies per image. This is the normalised format `prepare` writes: PNG images, int32 zlib TIFF
instance maps, uint8 PNG class maps.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import tifffile

from cosyn.core.classes import ClassSet
from cosyn.data.formats.common import (
    _MAP_EXT,
    PathLike,
    SampleSequence,
    _build_sample,
    _class_map,
    _image,
    _instance_map,
    _match_partners,
    _Meta,
    _meta_near,
    _read_raster,
    _require_child,
    _save_png,
    _sequence,
    _split_roots,
)
from cosyn.data.sample import Sample


def read_folder(root: PathLike, split: str | None = None) -> SampleSequence:
    root = Path(root)
    rows: list[tuple[Path, Path, Path, _Meta]] = []
    for base in _split_roots(root, split, "images"):
        meta = _meta_near(base, root)
        triples = _match_partners(
            _require_child(base, "images"),
            [(_require_child(base, "instances"), _MAP_EXT), (_require_child(base, "classes"), _MAP_EXT)],
        )
        rows += [(*t, meta) for t in triples]
    return _sequence(root, [r[0].stem for r in rows], lambda i: _load_folder(*rows[i]))


def read_maps_pair(image_file: PathLike, inst_file: PathLike, class_file: PathLike, classes: ClassSet,
                   mpp: float | None, tissue: str | None = None) -> Sample:
    """One image with its instance map and class map (PNG or TIFF), as this format stores them."""
    return _load_folder(Path(image_file), Path(inst_file), Path(class_file),
                        _Meta(classes=classes, mpp=mpp, tissue=tissue))


def _load_folder(image_file: Path, inst_file: Path, class_file: Path, meta: _Meta) -> Sample:
    assert meta.classes is not None
    return _build_sample(
        image_file.stem,
        (image_file, inst_file, class_file),
        _image(_read_raster(image_file, rgb=True), image_file),
        _instance_map(_read_raster(inst_file), inst_file),
        _class_map(_read_raster(class_file), class_file, meta.classes),
        meta.classes,
        **meta.for_stem(image_file.stem),
    )


def write_folder(samples: Iterable[Sample], root: PathLike) -> None:
    """The normalised layout: PNG images, int32 zlib TIFF instance maps, uint8 PNG class maps."""
    root = Path(root)
    dirs = {k: root / k for k in ("images", "instances", "classes")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    meta = _Meta()
    for s in samples:
        meta.add(s)
        _save_png(dirs["images"] / f"{s.name}.png", s.image)
        tifffile.imwrite(dirs["instances"] / f"{s.name}.tif", s.inst_map.astype(np.int32), compression="zlib")
        _save_png(dirs["classes"] / f"{s.name}.png", s.class_map.astype(np.uint8))
    meta.save(root)
