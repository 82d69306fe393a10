import json

import numpy as np
import pytest
import scipy.io

from cosyn.core.classes import CONSEP, PANNUKE
from cosyn.core.instances import cut_instances
from cosyn.core.layout import Layout, LayoutError, Point
from cosyn.core.triple import Triple
from cosyn.io.export import write_bundle
from cosyn.io.layout_io import layout_from_geojson, layout_to_geojson, load_any, save_any


def sample_layout() -> Layout:
    pts = [Point(0.0, 0.0, "other"), Point(12.25, 40.5, "epithelial"), Point(63.9, 31.0, "spindle")]
    return Layout(64, 48, CONSEP.to_list(), pts, mpp=0.5, tissue="colon")


def xy_cls(layout):
    return [(round(p.x, 6), round(p.y, 6), p.cls) for p in layout.points]


@pytest.mark.parametrize("suffix", [".json", ".geojson", ".mat"])
def test_save_and_load_round_trip(tmp_path, suffix):
    layout = sample_layout()
    path = save_any(layout, tmp_path / f"l{suffix}")
    back = load_any(path, CONSEP, width=64, height=48, mpp=0.5, tissue="colon")
    assert (back.width, back.height, back.classes) == (64, 48, CONSEP.to_list())
    assert xy_cls(back) == xy_cls(layout)
    assert (back.mpp, back.tissue) == (0.5, "colon")


def test_a_json_layout_keeps_its_own_scale_and_tissue(tmp_path):
    path = save_any(sample_layout(), tmp_path / "l.json")
    back = load_any(path, CONSEP, mpp=0.25, tissue="breast")  # the caller's apply to formats without them
    assert (back.mpp, back.tissue) == (0.5, "colon")


def test_geojson_export_is_qupath_detections_in_corner_coordinates():
    fc = layout_to_geojson(sample_layout())
    f = fc["features"][1]
    assert f["geometry"] == {"type": "Point", "coordinates": [12.75, 41.0]}
    assert f["properties"]["objectType"] == "detection"
    assert f["properties"]["classification"] == {"name": "epithelial", "color": [255, 0, 0]}


def feature(geometry, cls="Epithelial", object_type="detection", **extra):
    props = {} if object_type is None else {"objectType": object_type}
    if cls is not None:
        props["classification"] = {"name": cls, "color": [255, 0, 0]}
    return {"type": "Feature", "geometry": geometry, "properties": props, **extra}


def square(x0, y0, side):
    ring = [[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side], [x0, y0]]
    return {"type": "Polygon", "coordinates": [ring]}


def test_qupath_objects_become_points():
    fc = {
        "type": "FeatureCollection",
        "features": [
            feature({"type": "Point", "coordinates": [10.5, 20.5]}, cls="Inflammatory"),
            feature({"type": "MultiPoint", "coordinates": [[1.5, 1.5], [3.5, 4.5]]}, object_type="annotation"),
            feature(square(20, 20, 4)),  # centre (22, 22) in corner coordinates
            feature(square(0, 0, 40), cls="Spindle", object_type="annotation"),  # a region: skipped
            feature(square(30, 0, 30), object_type="cell", nucleusGeometry=square(40, 10, 2)),
            feature({"type": "Point", "coordinates": [0.2, 5.5]}, cls=None),
        ],
    }
    layout = layout_from_geojson(fc, CONSEP, 64, 48, default_class="other")
    assert xy_cls(layout) == [
        (10, 20, "inflammatory"),
        (1, 1, "epithelial"),
        (3, 4, "epithelial"),
        (21.5, 21.5, "epithelial"),
        (40.5, 10.5, "epithelial"),
        (0, 5, "other"),  # within the first half pixel: clamped onto the canvas
    ]
    as_list = layout_from_geojson(fc["features"][:1], CONSEP, 64, 48)  # QuPath's "array" export
    assert len(as_list.points) == 1
    old = feature(square(20, 20, 4), object_type=None)
    old["properties"]["object_type"] = "annotation"  # QuPath 0.2 naming
    assert layout_from_geojson([old], CONSEP, 64, 48).points == []


def make_bundle(tmp_path):
    """A bundle cut from three discs, so instance centroids are known."""
    shape = (48, 64)
    rr, cc = np.indices(shape)
    centres = np.array([(12.0, 12.0), (24.0, 14.0), (45.0, 30.0)])
    d = np.stack([np.hypot(cc - x, rr - y) / 7 for x, y in centres])
    dist = np.clip(1 - d.min(0), 0, 1).astype(np.float32)
    class_map = np.where(d.min(0) <= 1, np.array([3, 2, 1])[d.argmin(0)], 0).astype(np.uint8)
    res = cut_instances(dist, class_map, centres, np.array([3, 2, 1]))
    layout = Layout.from_arrays(64, 48, CONSEP, centres, np.array([3, 2, 1]))
    image = np.zeros((*shape, 3), np.uint8)
    t = Triple(image, class_map, res.inst_map, dist, res.inst_classes, layout, {})
    write_bundle(t, tmp_path / "b", formats=("mat", "geojson"))
    return t, tmp_path / "b"


def test_exported_bundle_files_import_at_the_instance_centroids(tmp_path):
    t, b = make_bundle(tmp_path)
    want = np.array([[cols.mean(), rows.mean()] for rows, cols in (np.nonzero(t.inst_map == k) for k in (1, 2, 3))])
    from_mat = load_any(b / "hovernet.mat", CONSEP)  # canvas from the .mat's inst_map
    assert (from_mat.width, from_mat.height) == (64, 48)
    assert np.allclose(from_mat.xy(), want)
    assert [p.cls for p in from_mat.points] == ["epithelial", "inflammatory", "other"]
    from_geojson = load_any(b / "qupath.geojson", CONSEP, 64, 48)
    assert np.abs(from_geojson.xy() - want).max() < 0.1  # outline centroid vs pixel mean
    assert [p.cls for p in from_geojson.points] == ["epithelial", "inflammatory", "other"]


def test_json_layout_is_expressed_in_the_model_classes(tmp_path):
    path = save_any(Layout(32, 32, ["background", "Epithelial"], [Point(3, 4, "epithelial")]), tmp_path / "l.json")
    assert load_any(path).classes == ["background", "epithelial"]
    moved = load_any(path, PANNUKE)
    assert moved.classes == PANNUKE.to_list() and moved.class_ids().tolist() == [5]
    with pytest.raises(LayoutError, match=r"l\.json.*'epithelial'.*not in the model"):
        load_any(path, ["background", "tumour"])


def write(path, obj):
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


@pytest.mark.parametrize(
    ("content", "kwargs", "message"),
    [
        ({"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 1]}, "properties": {}}, {}, "no class"),
        ([feature({"type": "Point", "coordinates": [1, 1]}, cls="Tumor")], {}, "feature 0: unknown class 'Tumor'"),
        ([feature({"type": "Point", "coordinates": [70, 1]})], {}, "point 0 at .* outside the 64x48 canvas"),
        ([feature({"type": "Point", "coordinates": ["a", 1]})], {}, "feature 0: malformed Point"),
        ([feature({"type": "LineString", "coordinates": [[1, 1], [2, 2]]})], {}, "unsupported geometry"),
        ([{"type": "Feature"}], {}, "feature 0: a Feature with a 'geometry'"),
        ({"type": "Topology"}, {}, "expected a GeoJSON"),
        ("{not json", {}, "not valid JSON"),
        ([], {"width": None}, "no canvas size"),
        ([], {"classes": None}, "carries no class list"),
    ],
)
def test_bad_geojson_names_the_file(tmp_path, content, kwargs, message):
    path = write(tmp_path / "bad.geojson", content)
    args = {"classes": CONSEP, "width": 64, "height": 48, **kwargs}
    with pytest.raises(LayoutError, match=r"bad\.geojson.*" + message):
        load_any(path, **args)


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(LayoutError, match=r"missing\.json: no such file"):
        load_any(tmp_path / "missing.json", CONSEP)
    with pytest.raises(LayoutError, match=r"l\.txt: unknown layout file type"):
        load_any(write(tmp_path / "l.txt", "{}"), CONSEP)
    with pytest.raises(LayoutError, match=r"l\.json: missing key"):
        load_any(write(tmp_path / "l.json", {"width": 64}), CONSEP)
    with pytest.raises(LayoutError, match=r"l\.csv: unknown layout file type"):
        save_any(sample_layout(), tmp_path / "l.csv")


def test_bad_mat_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.mat"
    with pytest.raises(LayoutError, match=r"bad\.mat: not a readable \.mat"):
        load_any(write(bad, "garbage"), CONSEP, 64, 48)
    scipy.io.savemat(bad, {"inst_map": np.zeros((4, 4))})
    with pytest.raises(LayoutError, match=r"bad\.mat: no 'inst_centroid'.*inst_map"):
        load_any(bad, CONSEP)
    scipy.io.savemat(bad, {"inst_centroid": np.array([[1.0, 2.0]]), "inst_type": np.array([[9]])})
    with pytest.raises(LayoutError, match=r"bad\.mat: instance 0 has inst_type 9"):
        load_any(bad, CONSEP, 64, 48)
    with pytest.raises(LayoutError, match=r"bad\.mat: no inst_map to take the canvas size"):
        load_any(bad, CONSEP)
    scipy.io.savemat(bad, {"inst_centroid": np.array([[1.0, 2.0]]), "inst_type": np.array([[0]])})
    with pytest.raises(LayoutError, match=r"bad\.mat: instance 0 has inst_type 0"):
        load_any(bad, CONSEP, 64, 48)
    assert load_any(bad, CONSEP, 64, 48, default_class="spindle").points == [Point(1.0, 2.0, "spindle")]
    scipy.io.savemat(bad, {"inst_centroid": np.array([[100.0, 2.0]]), "inst_type": np.array([[1]])})
    with pytest.raises(LayoutError, match=r"bad\.mat: point 0 at \(100, 2\) lies outside"):
        load_any(bad, CONSEP, 64, 48)
    with pytest.raises(LayoutError, match=r"bad\.mat: this format carries no class list"):
        load_any(bad)
    scipy.io.savemat(bad, {"inst_centroid": np.array([[1.0, 2.0]]), "inst_type": np.array([[np.nan]])})
    with pytest.raises(LayoutError, match=r"bad\.mat: inst_centroid and inst_type must be finite"):
        load_any(bad, CONSEP, 64, 48)


def test_a_mat_layout_reads_the_canvas_size_without_loading_the_instance_map(tmp_path, monkeypatch):
    path = tmp_path / "big.mat"
    scipy.io.savemat(path, {"inst_map": np.zeros((2000, 1500), np.int32), "inst_centroid": np.array([[5.0, 6.0]]),
                            "inst_type": np.array([[2]])}, do_compression=True)
    real_loadmat = scipy.io.loadmat
    asked = []

    def recording_loadmat(*args, **kwargs):
        asked.append(kwargs.get("variable_names"))
        return real_loadmat(*args, **kwargs)

    monkeypatch.setattr(scipy.io, "loadmat", recording_loadmat)
    layout = load_any(path, CONSEP)
    assert (layout.width, layout.height) == (1500, 2000) and layout.points == [Point(5.0, 6.0, "inflammatory")]
    assert asked and all(names is not None and "inst_map" not in names for names in asked)


GOOD = {"width": 64, "height": 64, "classes": ["background", "epithelial"], "mpp": 0.25,
        "points": [{"x": 10.5, "y": 20, "cls": "epithelial"}]}


@pytest.mark.parametrize("change, message", [
    ({"points": [{"x": 10**400, "y": 1, "cls": "epithelial"}]}, "point 0 must be"),
    ({"points": [{"x": "10", "y": 1, "cls": "epithelial"}]}, "point 0 must be"),
    ({"points": [{"x": True, "y": 1, "cls": "epithelial"}]}, "point 0 must be"),
    ({"points": [{"x": 1, "y": 1, "cls": ["epithelial"]}]}, "point 0 must be"),
    ({"mpp": "0.5"}, "mpp must be a number"),
    ({"mpp": 0}, "not a plausible microns-per-pixel"),
    ({"tissue": {"organ": "colon"}}, "tissue must be text"),
    ({"prompt": [1, 2]}, "prompt must be text"),
    ({"width": 10**400}, "is outside the allowed"),
])
def test_malformed_layout_values_are_refused_by_name(tmp_path, change, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**GOOD, **change}))
    with pytest.raises(LayoutError, match=message) as e:
        Layout.load(path)
    assert str(path) in str(e.value) and len(str(e.value)) < 400
    assert Layout.from_dict(GOOD).points == [Point(10.5, 20.0, "epithelial")]


def test_deeply_nested_json_is_refused_not_a_crash(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    for load in (Layout.load, load_any):
        with pytest.raises(LayoutError, match="nested too deeply"):
            load(path)
