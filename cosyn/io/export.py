"""The export bundle (docs/architecture.md): one folder per triple, written atomically.

Always written (the `read_bundle` round-trip needs them; "png" names this core set):
  image.png, class.png (uint8 ids), class_rgb.png, inst.tif (int32, deflate), dist.npy
  (float32), layout.json, params.json, and instances.json ({id, class_id, class, x, y} per
  instance, so per-instance classes survive a round-trip even where they differ from the
  label map's majority).
Optional formats:
  "npy"      inst.npy (int32) for numpy users.
  "mat"      hovernet.mat: inst_map, type_map, inst_type (N, 1), inst_centroid (N, 2) as
             (x, y), inst_uid (N, 1). Ids are made sequential 1..N so that row i belongs
             to instance i + 1, which HoVer-Net tooling assumes.
  "geojson"  qupath.geojson: one QuPath detection per instance, classified and coloured.
  "coco"     coco.json: one image, polygon annotations, nucleus-class categories.

Coordinates. Arrays, layout.json, instances.json and hovernet.mat put pixel (row r,
column c) at x = c, y = r (HoVer-Net's convention). QuPath and COCO treat that pixel as the
square [c, c+1] x [r, r+1], so their polygons are the pixel-edge outline in those
coordinates: rasterising a polygon by pixel centres gives back the instance mask exactly.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import tifffile
from PIL import Image
from scipy import ndimage as ndi
from skimage.measure import find_contours
from skimage.segmentation import relabel_sequential

import cosyn
from cosyn.core.instances import instance_table
from cosyn.core.layout import Layout
from cosyn.core.triple import Triple
from cosyn.io.fileio import atomic_dir, atomic_write

FORMATS = ("png", "npy", "mat", "geojson", "coco")
CORNER_OFFSET = 0.5  # pixel-centre coordinates (ours) -> pixel-corner coordinates (QuPath, COCO)


def check_formats(formats: Sequence[str]) -> None:
    """Refuse unknown formats, naming what is offered."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; choose from {list(FORMATS)}")


def write_bundle(
    triple: Triple, out_dir: str | Path, formats: Sequence[str] = FORMATS, overwrite: bool = False
) -> list[Path]:
    """Write `triple` as a bundle folder `out_dir`; returns the paths written.

    Everything goes to a temporary sibling folder that is renamed into place at the end, so
    a failure leaves either the previous folder or nothing, never half a bundle.
    """
    check_formats(formats)
    _check_triple(triple)
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists; pass --overwrite (overwrite=True from Python) to replace it")
    with atomic_dir(out_dir) as tmp:
        names = _write_files(triple, tmp, formats)
    return [out_dir / n for n in names]


def read_bundle(bundle_dir: str | Path) -> Triple:
    """Load a bundle written by `write_bundle` (never unpickles)."""
    d = Path(bundle_dir)
    image = np.array(Image.open(d / "image.png").convert("RGB"))
    class_map = np.array(Image.open(d / "class.png")).astype(np.uint8)
    if (d / "inst.npy").exists():
        inst_map = np.load(d / "inst.npy", allow_pickle=False)
    else:
        inst_map = tifffile.imread(d / "inst.tif")
    dist_map = np.load(d / "dist.npy", allow_pickle=False).astype(np.float32)
    layout = Layout.load(d / "layout.json")
    params = json.loads((d / "params.json").read_text())
    inst_map = inst_map.astype(np.int32)
    if (d / "instances.json").exists():
        rows = json.loads((d / "instances.json").read_text())["instances"]
        inst_classes = {int(r["id"]): int(r["class_id"]) for r in rows}
    else:  # a hand-made bundle: fall back to the label map's majority
        ids, _, majority = instance_table(inst_map, class_map)
        inst_classes = dict(zip(ids.tolist(), majority.tolist(), strict=True))
    return Triple(image, class_map, inst_map, dist_map, inst_classes, layout, params)


def zip_bundles(dirs: Iterable[str | Path], zip_path: str | Path) -> Path:
    """Zip bundle folders, each under its own folder name; written atomically."""
    dirs = [Path(d) for d in dirs]
    names = [d.name for d in dirs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"bundle folder names must be unique inside one zip, repeated: {dupes}")
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise FileNotFoundError(f"not bundle folders: {missing}")
    zip_path = Path(zip_path)

    def write(tmp: str) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for d in dirs:
                for f in sorted(p for p in d.rglob("*") if p.is_file()):
                    zf.write(f, arcname=f"{d.name}/{f.relative_to(d).as_posix()}")

    atomic_write(zip_path, write)
    return zip_path


def json_safe(obj: Any) -> Any:
    """Plain JSON types for params: numpy scalars/arrays become Python values, non-finite
    floats null (JSON has no NaN), anything else its string (provenance beats a failed export)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.ndarray, np.generic)):
        return json_safe(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


# -- checks and the folder swap -------------------------------------------------------------------


def _check_triple(t: Triple) -> None:
    h, w = t.class_map.shape[:2]
    if t.image.shape != (h, w, 3) or t.image.dtype != np.uint8:
        raise ValueError(f"image must be ({h}, {w}, 3) uint8, got {t.image.shape} {t.image.dtype}")
    for name, a in (("class_map", t.class_map), ("inst_map", t.inst_map), ("dist_map", t.dist_map)):
        if a.shape != (h, w):
            raise ValueError(f"{name} must be ({h}, {w}), got {a.shape}")
    n = len(t.layout.classes)
    if t.class_map.size and not 0 <= int(t.class_map.min()) <= int(t.class_map.max()) < n:
        raise ValueError(f"class_map ids must lie in 0..{n - 1} (the layout's {n} classes)")
    if not np.issubdtype(t.inst_map.dtype, np.integer) or t.inst_map.min(initial=0) < 0:
        raise ValueError("inst_map must hold non-negative integer ids")
    if t.inst_map.max(initial=0) > np.iinfo(np.int32).max:
        raise ValueError("inst_map ids must fit int32")


# -- the writers ------------------------------------------------------------------------------------


def _write_files(t: Triple, d: Path, formats: Sequence[str]) -> list[str]:
    table = InstanceTable.of(t)  # once per bundle: every file below lists the same instances
    _write_core(t, d, table)
    written = ["image.png", "class.png", "class_rgb.png", "inst.tif", "dist.npy"]
    written += ["layout.json", "params.json", "instances.json"]
    if "npy" in formats:
        np.save(d / "inst.npy", t.inst_map.astype(np.int32), allow_pickle=False)
        written.append("inst.npy")
    if "mat" in formats:
        scipy.io.savemat(d / "hovernet.mat", hovernet_dict(t, table), do_compression=True)
        written.append("hovernet.mat")
    if "geojson" in formats:
        _write_json(d / "qupath.geojson", qupath_geojson(t, table))
        written.append("qupath.geojson")
    if "coco" in formats:
        _write_json(d / "coco.json", coco_dict(t, table))
        written.append("coco.json")
    return written


def _write_core(t: Triple, d: Path, table: InstanceTable) -> None:
    classes = t.layout.class_set
    Image.fromarray(t.image).save(d / "image.png")
    class_map = t.class_map.astype(np.uint8)
    Image.fromarray(class_map).save(d / "class.png")
    Image.fromarray(np.array(classes.colours, np.uint8)[class_map]).save(d / "class_rgb.png")
    tifffile.imwrite(d / "inst.tif", t.inst_map.astype(np.int32), compression="zlib")
    np.save(d / "dist.npy", t.dist_map.astype(np.float32), allow_pickle=False)
    (d / "layout.json").write_text(t.layout.to_json())
    _write_json(d / "params.json", json_safe(t.params))
    rows = [
        {"id": i, "class_id": c, "class": classes.names[c], "x": x, "y": y}
        for i, c, (x, y) in zip(table.ids.tolist(), table.classes.tolist(), table.centroids.tolist(), strict=True)
    ]
    _write_json(d / "instances.json", {"classes": classes.to_list(), "instances": rows})


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, allow_nan=False))


@dataclass
class InstanceTable:
    """Ascending instance ids, their (x, y) centroids and class ids."""

    ids: np.ndarray
    centroids: np.ndarray
    classes: np.ndarray

    @classmethod
    def of(cls, t: Triple) -> InstanceTable:
        """The triple's own per-instance classes, the label map's majority where it has none."""
        ids, centroids, majority = instance_table(t.inst_map, t.class_map)
        n = len(t.layout.classes)
        own = [t.inst_classes.get(i, m) for i, m in zip(ids.tolist(), majority.tolist(), strict=True)]
        classes = np.array(own, np.int64).reshape(-1)
        if classes.size and not (classes.min() >= 0 and classes.max() < n):
            raise ValueError(f"inst_classes must lie in 0..{n - 1} (the layout's {n} classes)")
        return cls(ids, centroids.reshape(-1, 2), classes)


def hovernet_dict(t: Triple, table: InstanceTable | None = None) -> dict[str, np.ndarray]:
    """HoVer-Net's .mat keys; ids made sequential so that row i is instance i + 1. `table`: the triple's
    instance table when the caller has it (`write_bundle` builds it once per bundle)."""
    table = table or InstanceTable.of(t)
    n = len(table.ids)
    seq, _, _ = relabel_sequential(t.inst_map.astype(np.int32))  # keeps the id order: rows stay aligned
    return {
        "inst_map": seq.astype(np.int32),
        "type_map": t.class_map.astype(np.int32),
        "inst_type": table.classes.astype(np.int32).reshape(n, 1),
        "inst_centroid": table.centroids.astype(np.float64),
        "inst_uid": np.arange(1, n + 1, dtype=np.int32).reshape(n, 1),
    }


def qupath_geojson(t: Triple, table: InstanceTable | None = None) -> dict[str, Any]:
    """A FeatureCollection of QuPath detections; an instance of class 0 stays unclassified."""
    classes = t.layout.class_set
    features = []
    own = (table or InstanceTable.of(t)).classes.tolist()
    for c, nucleus in zip(own, _instance_shapes(t.inst_map), strict=True):
        coords = [[r.tolist()] for r in nucleus.rings]
        geometry = (
            {"type": "Polygon", "coordinates": coords[0]}
            if len(coords) == 1
            else {"type": "MultiPolygon", "coordinates": coords}
        )
        props: dict[str, Any] = {"objectType": "detection", "isLocked": False}
        if c:
            props["classification"] = {"name": classes.names[c], "color": list(classes.colours[c])}
        features.append({"type": "Feature", "geometry": geometry, "properties": props})
    return {"type": "FeatureCollection", "features": features}


def coco_dict(t: Triple, table: InstanceTable | None = None) -> dict[str, Any]:
    """One-image COCO instance segmentation. COCO has no category for class 0, so
    unclassified instances are left out and counted in `info`."""
    h, w = t.inst_map.shape
    table = table or InstanceTable.of(t)
    annotations = []
    for inst_id, c, nucleus in zip(
        table.ids.tolist(), table.classes.tolist(), _instance_shapes(t.inst_map), strict=True
    ):
        if c == 0:
            continue
        annotations.append(
            {
                "id": inst_id,
                "image_id": 1,
                "category_id": c,
                "segmentation": [r[:-1].ravel().tolist() for r in nucleus.rings],  # COCO rings close implicitly
                "area": int(nucleus.mask.sum()),
                "bbox": [nucleus.col0, nucleus.row0, nucleus.mask.shape[1], nucleus.mask.shape[0]],
                "iscrowd": 0,
            }
        )
    info = {
        "description": "CoSyn Studio synthetic nuclei",
        "version": cosyn.__version__,
        "unclassified_instances_omitted": int((table.classes == 0).sum()),
    }
    names = t.layout.class_set.names
    return {
        "info": info,
        "images": [{"id": 1, "file_name": "image.png", "width": int(w), "height": int(h)}],
        "annotations": annotations,
        "categories": [{"id": i, "name": n, "supercategory": "nucleus"} for i, n in enumerate(names) if i],
    }


@dataclass
class _InstanceShape:
    """One instance: its tight bounding-box mask, the box origin and its outline rings."""

    mask: np.ndarray
    row0: int
    col0: int
    rings: list[np.ndarray]


def _instance_shapes(inst: np.ndarray) -> Iterator[_InstanceShape]:
    """Instances in ascending id (the order of `instance_table`); rings are closed (x, y)
    corner-convention polygons, one per separate part of the instance."""
    seq, _, _ = relabel_sequential(inst)  # find_objects wants compact ids; the order is kept
    for k, (rs, cs) in enumerate(ndi.find_objects(seq)):
        mask = seq[rs, cs] == k + 1
        origin = np.array([cs.start, rs.start], np.float64)
        yield _InstanceShape(mask, rs.start, cs.start, [ring + origin for ring in _outline(mask)])


def _outline(mask: np.ndarray) -> list[np.ndarray]:
    """Pixel-edge outlines of a mask, local corner coordinates.

    Marching squares at 0.5 puts every vertex halfway between an inside and an outside pixel
    centre, so a centre-sampling rasteriser recovers the mask; holes are filled first
    (a nucleus has none) so that every ring is an outer one.
    """
    filled = np.pad(ndi.binary_fill_holes(mask), 1).astype(np.float32)
    return [_drop_collinear(ring[:, ::-1]) - 1 + CORNER_OFFSET for ring in find_contours(filled, 0.5)]


def _drop_collinear(ring: np.ndarray) -> np.ndarray:
    """A closed ring without its straight-through vertices (half of what marching squares
    emits along a straight edge); the shape is unchanged."""
    pts = ring[:-1]
    into, out = pts - np.roll(pts, 1, axis=0), np.roll(pts, -1, axis=0) - pts
    pts = pts[np.abs(into[:, 0] * out[:, 1] - into[:, 1] * out[:, 0]) > 1e-9]
    return np.concatenate([pts, pts[:1]])
