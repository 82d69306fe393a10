"""Layouts from and to the formats pathologists already have: QuPath GeoJSON and HoVer-Net .mat.

- GeoJSON (QuPath "Export objects"): a FeatureCollection, a bare list of features or one
  Feature. Point and MultiPoint geometries (QuPath's point tool) give one nucleus per
  point, whatever their objectType. Polygon / MultiPolygon detections and cells give one
  nucleus at the polygon's area centroid (a cell's `nucleusGeometry` when it has one;
  QuPath 0.2's `object_type` is read like `objectType`).
  Polygon *annotations* are regions (tumour, stroma outlines), not nuclei, and are skipped.
  QuPath puts pixel (row r, column c) at [c, c+1] x [r, r+1]; layouts put its centre at
  (c, r), so coordinates shift by half a pixel each way (see cosyn.io.export).
- HoVer-Net .mat: `inst_centroid` (N, 2) as (x, y) and `inst_type` (N, 1), whose ids index
  a class list the caller names (the file does not carry one).

Every error is a LayoutError that names the file and the offending feature or key.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from cosyn.core.classes import ClassSet
from cosyn.core.layout import Layout, LayoutError, Point, read_json
from cosyn.io.export import CORNER_OFFSET
from cosyn.io.fileio import atomic_write

Classes = ClassSet | Sequence[str]
NUCLEUS_OBJECT_TYPES = ("detection", "cell", None)  # None: plain GeoJSON without QuPath properties


def load_any(
    path: str | Path,
    classes: Classes | None = None,
    width: int | None = None,
    height: int | None = None,
    default_class: str | None = None,
    mpp: float | None = None,
    tissue: str | None = None,
) -> Layout:
    """A layout from a .json layout, a GeoJSON (.geojson or .json) or a HoVer-Net .mat.

    `classes` is the class set to express the layout in; a .json layout keeps its own when
    it is None. GeoJSON needs `width`/`height` (it has no canvas); a .mat falls back to its
    `inst_map` shape. `default_class` names the class of unclassified objects, which are
    an error without it. `mpp` and `tissue` are given to GeoJSON and .mat layouts, which
    carry neither; a .json layout keeps its own (no mpp there means the model's).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".mat":
        layout = load_mat(path, _required_classes(classes, path), width, height, default_class)
        return replace(layout, mpp=mpp, tissue=tissue)
    if suffix not in (".json", ".geojson"):
        raise LayoutError(f"{path}: unknown layout file type {suffix!r}; expected .json, .geojson or .mat")
    data = read_json(path)
    if suffix == ".geojson" or _is_geojson(data):
        w, h = _required_size(width, height, path)
        layout = layout_from_geojson(data, _required_classes(classes, path), w, h, str(path), default_class)
        return replace(layout, mpp=mpp, tissue=tissue)
    layout = Layout.from_dict(data, where=str(path))
    return layout if classes is None else _conform(layout, _class_set(classes), str(path))


# -- GeoJSON ----------------------------------------------------------------------------------------


def layout_from_geojson(
    data: Any,
    classes: Classes,
    width: int,
    height: int,
    where: str = "geojson",
    default_class: str | None = None,
) -> Layout:
    """A layout from parsed GeoJSON (see the module doc for what becomes a point)."""
    class_set = _class_set(classes)
    points = []
    for i, feature in enumerate(_features(data, where)):
        at = f"{where}: feature {i}"
        xy = _feature_points(feature, at)
        if xy:
            cls = _feature_class(feature, class_set, default_class, at)
            points += [Point(*_to_centre(x, y), cls) for x, y in xy]
    return _make_layout(width, height, class_set, points, where)


def layout_to_geojson(layout: Layout) -> dict[str, Any]:
    """One QuPath point detection per layout point, classified and coloured."""
    cs = layout.class_set
    features = []
    for p in layout.points:
        c = cs.id_of(p.cls)
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [p.x + CORNER_OFFSET, p.y + CORNER_OFFSET]},
                "properties": {
                    "objectType": "detection",
                    "isLocked": False,
                    "classification": {"name": cs.names[c], "color": list(cs.colours[c])},
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


def _is_geojson(data: Any) -> bool:
    return isinstance(data, list) or (isinstance(data, dict) and data.get("type") in ("FeatureCollection", "Feature"))


def _features(data: Any, where: str) -> list[Any]:
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        data = data.get("features")
    elif isinstance(data, dict) and data.get("type") == "Feature":
        data = [data]
    if not isinstance(data, list):
        raise LayoutError(f"{where}: expected a GeoJSON FeatureCollection, Feature or list of features")
    return data


def _feature_points(feature: Any, at: str) -> list[tuple[float, float]]:
    """The nucleus positions a feature stands for, in QuPath's corner coordinates."""
    kind, coords, nucleus = _geometry(feature, at)
    try:
        if kind == "Point":
            return [_xy(coords)]
        if kind == "MultiPoint":
            if not isinstance(coords, list):
                raise ValueError("MultiPoint coordinates must be a list of positions")
            return [_xy(c) for c in coords]  # [] holds no point
        if not nucleus:
            return []
        if kind in ("Polygon", "MultiPolygon"):
            return [_polygons_centroid(_outer_rings(kind, coords))]
    except (TypeError, ValueError, IndexError):
        raise LayoutError(f"{at}: malformed {kind} coordinates") from None
    raise LayoutError(f"{at}: unsupported geometry type {kind!r} for a nucleus; use Point or Polygon")


def nucleus_outlines(data: Any, classes: Classes, where: str = "geojson",
                     default_class: str | None = None) -> list[tuple[list[np.ndarray], str]]:
    """Each nucleus' outer rings ((N, 2) x, y in QuPath's corner coordinates) and class, from parsed
    GeoJSON; region annotations are skipped. Editing a real tile needs every nucleus' extent, so a point
    nucleus, which has none, is refused."""
    class_set = _class_set(classes)
    outlines = []
    for i, feature in enumerate(_features(data, where)):
        at = f"{where}: feature {i}"
        kind, coords, nucleus = _geometry(feature, at)
        if kind in ("Point", "MultiPoint"):
            raise LayoutError(f"{at}: a point has no outline; editing a tile needs each nucleus as a polygon "
                              "(QuPath detections or cells)")
        if not nucleus:
            continue
        if kind not in ("Polygon", "MultiPolygon"):
            raise LayoutError(f"{at}: unsupported geometry type {kind!r} for a nucleus outline; use Polygon")
        try:
            rings = _outer_rings(kind, coords)
        except (TypeError, ValueError, IndexError):
            raise LayoutError(f"{at}: malformed {kind} coordinates") from None
        outlines.append((rings, _feature_class(feature, class_set, default_class, at)))
    return outlines


def _geometry(feature: Any, at: str) -> tuple[Any, Any, bool]:
    """(type, coordinates, whether the feature is a nucleus object) of a feature's nucleus geometry."""
    if not isinstance(feature, dict) or not isinstance(feature.get("geometry"), dict):
        raise LayoutError(f"{at}: a Feature with a 'geometry' object is required")
    props = feature.get("properties") or {}
    if not isinstance(props, dict):
        raise LayoutError(f"{at}: 'properties' must be an object")
    geometry = feature.get("nucleusGeometry") or feature["geometry"]
    if not isinstance(geometry, dict):
        raise LayoutError(f"{at}: 'nucleusGeometry' must be a geometry object")
    nucleus = props.get("objectType", props.get("object_type")) in NUCLEUS_OBJECT_TYPES
    return geometry.get("type"), geometry.get("coordinates"), nucleus


def _outer_rings(kind: str, coords: Any) -> list[np.ndarray]:
    """The outer ring of each polygon (holes ignored: a nucleus has none)."""
    polygons = [coords] if kind == "Polygon" else _listed(coords)
    return [np.array([_xy(c) for c in _listed(_listed(poly)[0])], np.float64).reshape(-1, 2) for poly in polygons]


def _listed(v: Any) -> list[Any]:
    """`v` when it is a non-empty JSON list; ValueError otherwise (GeoJSON nests lists of positions)."""
    if not isinstance(v, list) or not v:
        raise ValueError("expected a non-empty list")
    return v


def _xy(c: Any) -> tuple[float, float]:
    """A GeoJSON position [x, y(, z)] as finite floats; ValueError for anything else."""
    if not isinstance(c, (list, tuple)) or len(c) < 2 or not all(_is_number(v) for v in c[:2]):
        raise ValueError("a position must be [x, y] numbers")
    try:
        x, y = float(c[0]), float(c[1])
    except OverflowError:  # an integer beyond float range
        raise ValueError("coordinate out of range") from None
    if not (np.isfinite(x) and np.isfinite(y)):
        raise ValueError("non-finite coordinate")
    return x, y


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _polygons_centroid(rings: list[np.ndarray]) -> tuple[float, float]:
    """Area centroid of the rings; the vertex mean when the area vanishes (a degenerate ring)."""
    area, cx, cy = 0.0, 0.0, 0.0
    for r in rings:
        x, y = r[:, 0], r[:, 1]
        xn, yn = np.roll(x, -1), np.roll(y, -1)
        cross = x * yn - xn * y
        area += cross.sum() / 2
        cx += ((x + xn) * cross).sum() / 6
        cy += ((y + yn) * cross).sum() / 6
    if abs(area) < 1e-9:
        allv = np.concatenate(rings)
        return float(allv[:, 0].mean()), float(allv[:, 1].mean())
    return float(cx / area), float(cy / area)


def _feature_class(feature: dict[str, Any], class_set: ClassSet, default_class: str | None, at: str) -> str:
    cls = (feature.get("properties") or {}).get("classification")
    name = cls.get("name") if isinstance(cls, dict) else cls  # QuPath writes an object; others a string
    if name is None:
        if default_class is None:
            raise LayoutError(f"{at}: has no classification; pass a default class to accept unclassified objects")
        name = default_class
    return _known_class(name, class_set, at)


def _known_class(name: Any, class_set: ClassSet, at: str) -> str:
    key = str(name).strip().lower()
    if key not in class_set.nucleus_names:
        raise LayoutError(f"{at}: unknown class {name!r}; known: {list(class_set.nucleus_names)}")
    return key


def _to_centre(x: float, y: float) -> tuple[float, float]:
    """QuPath corner coordinates -> pixel-centre ones; the first half pixel clamps to 0."""
    x, y = x - CORNER_OFFSET, y - CORNER_OFFSET
    return (0.0 if -CORNER_OFFSET <= x < 0 else x), (0.0 if -CORNER_OFFSET <= y < 0 else y)


# -- HoVer-Net .mat ----------------------------------------------------------------------------------


def load_mat(
    path: str | Path,
    classes: Classes,
    width: int | None = None,
    height: int | None = None,
    default_class: str | None = None,
) -> Layout:
    """Layout from a HoVer-Net .mat; `classes` names the ids of its `inst_type` (0 = none)."""
    path = Path(path)
    class_set = _class_set(classes)
    try:
        # only the small variables: a compressed inst_map may inflate to gigabytes (its shape is all we need)
        mat = scipy.io.loadmat(path, variable_names=["inst_centroid", "inst_type"])
        shapes = {name: shape for name, shape, _ in scipy.io.whosmat(path)}
    except FileNotFoundError:
        raise LayoutError(f"{path}: no such file") from None
    except NotImplementedError:
        raise LayoutError(f"{path}: MATLAB v7.3 (HDF5) files are not supported; save it as v5 (-v7 or older)") from None
    except Exception as e:  # scipy raises several unrelated types for a corrupt file
        raise LayoutError(f"{path}: not a readable .mat file ({e})") from None
    if "inst_centroid" not in mat:
        raise LayoutError(f"{path}: no 'inst_centroid' in this .mat (variables: {sorted(shapes)})")
    try:
        xy = np.asarray(mat["inst_centroid"], np.float64)
        types = np.asarray(mat.get("inst_type", np.zeros(len(xy))), np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise LayoutError(f"{path}: inst_centroid and inst_type must be numeric arrays") from None
    if xy.size == 0:
        xy = xy.reshape(0, 2)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise LayoutError(f"{path}: inst_centroid must be (N, 2) of (x, y), got shape {xy.shape}")
    if len(types) != len(xy):
        raise LayoutError(f"{path}: {len(types)} inst_type rows for {len(xy)} centroids")
    if not np.isfinite(xy).all() or not np.isfinite(types).all():
        raise LayoutError(f"{path}: inst_centroid and inst_type must be finite numbers (found NaN or inf)")
    if width is None or height is None:
        if "inst_map" not in shapes:
            raise LayoutError(f"{path}: no inst_map to take the canvas size from; pass width and height")
        if len(shapes["inst_map"]) != 2:
            raise LayoutError(f"{path}: inst_map must be a 2-D label map, got shape {shapes['inst_map']}")
        height, width = shapes["inst_map"]
    names = [_mat_class(t, i, class_set, default_class, str(path)) for i, t in enumerate(types)]
    points = [Point(float(x), float(y), n) for (x, y), n in zip(xy, names, strict=True)]
    return _make_layout(int(width), int(height), class_set, points, str(path))


def layout_to_mat(layout: Layout, path: str | Path) -> Path:
    """HoVer-Net-style centroids: inst_centroid (N, 2) as (x, y), inst_type (N, 1) class ids."""
    path = Path(path)
    n = len(layout.points)
    scipy.io.savemat(
        path,
        {
            "inst_centroid": layout.xy().reshape(n, 2),
            "inst_type": layout.class_ids().reshape(n, 1),
            "classes": np.array(layout.classes, dtype=object),
        },
        appendmat=False,  # the path as given: an atomic writer's temp name must not grow a ".mat"
    )
    return path


def _mat_class(t: float, i: int, class_set: ClassSet, default_class: str | None, where: str) -> str:
    if t != int(t) or not 0 <= t < class_set.num_classes:
        raise LayoutError(f"{where}: instance {i} has inst_type {t:g}, outside the class list {list(class_set.names)}")
    if t == 0:
        if default_class is None:
            raise LayoutError(f"{where}: instance {i} has inst_type 0 (unlabelled); pass a default class")
        return _known_class(default_class, class_set, where)
    return class_set.names[int(t)]


# -- shared ------------------------------------------------------------------------------------------


def save_any(layout: Layout, path: str | Path) -> Path:
    """Write a layout as .json (the layout contract), .geojson or .mat, by extension, atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        atomic_write(path, lambda tmp: Path(tmp).write_text(layout.to_json()))
    elif suffix == ".geojson":
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(layout_to_geojson(layout))))
    elif suffix == ".mat":
        atomic_write(path, lambda tmp: layout_to_mat(layout, tmp))
    else:
        raise LayoutError(f"{path}: unknown layout file type {suffix!r}; expected .json, .geojson or .mat")
    return path


def _class_set(classes: Classes) -> ClassSet:
    try:
        return classes if isinstance(classes, ClassSet) else ClassSet(tuple(classes))
    except ValueError as e:
        raise LayoutError(f"bad class list: {e}") from None


def _required_classes(classes: Classes | None, path: Path) -> Classes:
    if classes is None:
        raise LayoutError(f"{path}: this format carries no class list; pass the classes its names/ids refer to")
    return classes


def _required_size(width: int | None, height: int | None, path: Path) -> tuple[int, int]:
    if width is None or height is None:
        raise LayoutError(f"{path}: GeoJSON has no canvas size; pass width and height")
    return int(width), int(height)


def _conform(layout: Layout, class_set: ClassSet, where: str) -> Layout:
    """The same points expressed in `class_set`, matched by class name."""
    if tuple(layout.classes) == class_set.names:
        return layout
    unknown = sorted({p.cls.strip().lower() for p in layout.points} - set(class_set.nucleus_names))
    if unknown:
        raise LayoutError(f"{where}: class(es) {unknown} are not in the model's classes {list(class_set.names)}")
    return Layout(
        layout.width, layout.height, class_set.to_list(), list(layout.points), layout.mpp, layout.tissue, layout.prompt
    )


def _make_layout(width: int, height: int, class_set: ClassSet, points: list[Point], where: str) -> Layout:
    """Build and validate, naming the file in the error (Layout itself says only 'layout')."""
    try:
        return Layout(int(width), int(height), class_set.to_list(), points)
    except LayoutError as e:
        raise LayoutError(f"{where}: {str(e).removeprefix('layout: ')}") from None
