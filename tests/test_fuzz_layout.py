"""Property-based fuzzing of every parser of a user's layout file: whatever the input, the answer is a
valid Layout (or outline list) or a LayoutError, never another exception.

Inputs are mostly structured (layouts, GeoJSON features, .mat variables with wrong types, sizes and
values in the right places), so the parsers' deeper paths are reached, plus raw bytes and text. 2,000
examples per parser, derandomized: the same examples on every run, so a failure reproduces.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from fuzz_values import FUZZ, json_values, mutated
from hypothesis import example, given
from hypothesis import strategies as st

from cosyn.core.classes import CONSEP
from cosyn.core.layout import Layout, LayoutError
from cosyn.io.layout_io import layout_from_geojson, load_any, load_mat, nucleus_outlines

LAYOUT = {"width": 64, "height": 48, "mpp": 0.5, "tissue": "colon", "classes": CONSEP.to_list(), "prompt": "x",
          "points": [{"x": 0.0, "y": 0.0, "cls": "other"}, {"x": 12.5, "y": 40, "cls": "Epithelial"},
                     {"x": 63.9, "y": 47.9, "cls": "spindle"}]}
LAYOUT_PATHS = [("width",), ("height",), ("mpp",), ("tissue",), ("prompt",), ("classes",), ("classes", 0),
                ("classes", 2), ("points",), ("points", 0), ("points", 1), *[("points", i, k) for i in range(3)
                                                                             for k in ("x", "y", "cls")]]
layouts = st.one_of(mutated(LAYOUT, LAYOUT_PATHS), json_values)

SQUARE = [[[10, 10], [20, 10], [20, 20], [10, 20], [10, 10]]]
GEOJSON = {"type": "FeatureCollection", "features": [
    {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5.5, 6.5]},
     "properties": {"objectType": "detection", "classification": {"name": "Inflammatory", "color": [1, 2, 3]}}},
    {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": SQUARE},
     "nucleusGeometry": {"type": "Polygon", "coordinates": SQUARE},
     "properties": {"object_type": "cell", "classification": "epithelial"}},
    {"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [SQUARE, SQUARE]},
     "properties": {"objectType": "detection", "classification": {"name": "other"}}},
    {"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": [[1, 2], [30, 40]]},
     "properties": {"classification": {"name": "spindle"}}},
    {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": SQUARE},
     "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}}},
]}
GEOJSON_PATHS = [("type",), ("features",), *[p for i in range(5) for p in (
    ("features", i), ("features", i, "type"), ("features", i, "geometry"), ("features", i, "geometry", "type"),
    ("features", i, "geometry", "coordinates"), ("features", i, "geometry", "coordinates", 0),
    ("features", i, "geometry", "coordinates", 0, 1), ("features", i, "geometry", "coordinates", 0, 0, 1),
    ("features", i, "properties"), ("features", i, "properties", "objectType"),
    ("features", i, "properties", "classification"), ("features", i, "properties", "classification", "name"),
    ("features", i, "nucleusGeometry"))]]
geojsons = st.one_of(mutated(GEOJSON, GEOJSON_PATHS), mutated(GEOJSON["features"], [p[1:] for p in GEOJSON_PATHS
                                                                                        if p[:1] == ("features",)]),
                     mutated(GEOJSON["features"][1], [p[2:] for p in GEOJSON_PATHS if p[1:2] == (1,)]),
                     json_values)


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


@FUZZ
@given(data=st.one_of(layouts, layouts, json_values))
def test_a_json_layout_is_a_layout_or_a_layout_error(data):
    try:
        layout = Layout.from_dict(data, where="fuzz.json")
    except LayoutError:
        return
    layout.validate()  # what was accepted holds the contract


# what the fuzzing found (each was a KeyError or OverflowError before the fix), kept as fixed examples
FOUND_GEOJSON = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": {}}},
                 {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [{}]}},
                 {"type": "Feature", "geometry": {"type": "Point", "coordinates": [10**400, 1]}}]


@FUZZ
@given(data=geojsons, default=st.sampled_from([None, "other"]))
@example(data=FOUND_GEOJSON[0], default=None)
@example(data=FOUND_GEOJSON[1], default=None)
@example(data=FOUND_GEOJSON[2], default="other")
def test_geojson_is_a_layout_or_a_layout_error(data, default):
    try:
        layout = layout_from_geojson(data, CONSEP, 256, 256, "fuzz.geojson", default)
    except LayoutError:
        return
    layout.validate()


@FUZZ
@given(data=geojsons, default=st.sampled_from([None, "other"]))
@example(data=FOUND_GEOJSON[1], default=None)
def test_geojson_outlines_are_outlines_or_a_layout_error(data, default):
    try:
        outlines = nucleus_outlines(data, CONSEP, "fuzz.geojson", default)
    except LayoutError:
        return
    for rings, cls in outlines:
        assert cls in CONSEP.nucleus_names
        assert all(r.ndim == 2 and r.shape[1] == 2 and np.isfinite(r).all() for r in rings)


@FUZZ
@given(content=st.one_of(
    layouts.map(lambda d: json.dumps(d).encode()),
    geojsons.map(lambda d: json.dumps(d).encode()),
    layouts.map(lambda d: json.dumps(d).encode()[:40]),  # cut short
    st.binary(max_size=64),
    st.sampled_from([b"", b"\xff\xfe", b"[" * 100_000, b'{"width": ' + b"1" * 5000 + b"}", b"NaN", b"\x00"]),
), suffix=st.sampled_from([".json", ".geojson"]))
def test_a_layout_file_is_a_layout_or_a_layout_error(folder, content, suffix):
    path = folder / f"fuzz{suffix}"
    path.write_bytes(content)
    try:
        layout = load_any(path, CONSEP, width=128, height=128, default_class="other")
    except LayoutError:
        return
    layout.validate()


mat_values = st.sampled_from([0, 1, 2, 4, 5, -1, 1.5, 63.9, 64, 1e308, 2.0**60, float("nan"), float("inf")])
mat_arrays = st.one_of(
    st.lists(mat_values, max_size=10).map(lambda v: np.array(v, np.float64).reshape(-1, 2) if len(v) % 2 == 0
                                          else np.array(v, np.float64)),
    st.lists(mat_values, max_size=5).map(lambda v: np.array(v, np.float64).reshape(-1, 1)),
    st.lists(st.integers(-2, 6), max_size=5).map(lambda v: np.array(v, np.int64).reshape(1, -1)),
    st.sampled_from([np.array("other"), np.zeros((0, 0)), np.zeros((3, 2, 2)), np.ones((64, 48), np.int32)]),
)


@FUZZ
@given(variables=st.dictionaries(st.sampled_from(["inst_centroid", "inst_type", "inst_map", "other"]), mat_arrays,
                                 max_size=4),
       size=st.sampled_from([(None, None), (64, 64), (4, 4)]), default=st.sampled_from([None, "other"]))
@example(variables={"inst_centroid": np.array("other")}, size=(None, None), default=None)  # was a ValueError
@example(variables={"inst_centroid": np.zeros((0, 2)), "inst_map": np.array("other")}, size=(None, None), default=None)
def test_a_hovernet_mat_is_a_layout_or_a_layout_error(folder, variables, size, default):
    path = folder / "fuzz.mat"
    scipy.io.savemat(path, variables)
    try:
        layout = load_mat(path, CONSEP, *size, default_class=default)
    except LayoutError:
        return
    layout.validate()
