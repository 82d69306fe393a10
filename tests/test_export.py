import json
import zipfile

import cv2
import numpy as np
import pytest
import scipy.io
from skimage.draw import polygon2mask

import cosyn.io.export as export
from cosyn.core.classes import CONSEP
from cosyn.core.layout import Layout
from cosyn.core.triple import Triple
from cosyn.io.export import json_safe, read_bundle, write_bundle, zip_bundles

CENTRES = np.array([(20, 30), (36, 30), (70, 70), (50, 85)], float)
RADII = [10, 10, 8, 3]
CLASSES = [3, 2, 1, 4]
ALL_FILES = {
    "image.png",
    "class.png",
    "class_rgb.png",
    "inst.tif",
    "dist.npy",
    "layout.json",
    "params.json",
    "instances.json",
    "inst.npy",
    "hovernet.mat",
    "qupath.geojson",
    "coco.json",
}


def make_triple(ids=(1, 2, 3, 4), shape=(100, 120)) -> Triple:
    """Discs (the first two touch) with instance ids `ids`, classes CLASSES."""
    rr, cc = np.indices(shape)
    d2 = np.stack([((rr - y) ** 2 + (cc - x) ** 2) / r**2 for (x, y), r in zip(CENTRES, RADII, strict=True)])
    inside = d2.min(0) <= 1
    inst = np.where(inside, np.array(ids)[d2.argmin(0)], 0).astype(np.int32)
    class_map = np.where(inside, np.array(CLASSES)[d2.argmin(0)], 0).astype(np.uint8)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    dist = rng.random(shape, dtype=np.float32) * inside
    layout = Layout.from_arrays(shape[1], shape[0], CONSEP, CENTRES, np.array(CLASSES), mpp=0.5, tissue="colon")
    params = {"seed": np.int64(7), "guidance": np.float32(2.5), "steps": 20, "prompt": "p", "missed": [], "x": None}
    return Triple(image, class_map, inst, dist, dict(zip(ids, CLASSES, strict=True)), layout, params)


def test_bundle_round_trip(tmp_path):
    t = make_triple()
    paths = write_bundle(t, tmp_path / "b")
    assert {p.name for p in paths} == ALL_FILES == {p.name for p in (tmp_path / "b").iterdir()}
    back = read_bundle(tmp_path / "b")
    for name in ("image", "class_map", "inst_map", "dist_map"):
        a, b = getattr(t, name), getattr(back, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert back.inst_classes == t.inst_classes
    assert back.layout.to_dict() == t.layout.to_dict()
    assert back.params == json_safe(t.params) == {**t.params, "seed": 7, "guidance": 2.5}
    rgb = np.array(cv2.imread(str(tmp_path / "b" / "class_rgb.png"))[..., ::-1])
    assert (rgb[30, 20] == CONSEP.colours[3]).all() and (rgb[0, 0] == 0).all()


def test_ids_beyond_uint16_survive_the_tif(tmp_path):
    t = make_triple(ids=(70000, 5, 123456, 9))
    write_bundle(t, tmp_path / "b", formats=("png",))
    assert not (tmp_path / "b" / "inst.npy").exists()
    back = read_bundle(tmp_path / "b")
    assert back.inst_map.dtype == np.int32 and np.array_equal(back.inst_map, t.inst_map)
    assert back.inst_classes == t.inst_classes


def test_hovernet_mat(tmp_path):
    t = make_triple(ids=(40, 7, 300, 8))  # not contiguous: the .mat makes them 1..N
    write_bundle(t, tmp_path / "b", formats=("mat",))
    mat = scipy.io.loadmat(tmp_path / "b" / "hovernet.mat")
    assert {"inst_map", "type_map", "inst_type", "inst_centroid"} <= set(mat)
    inst = mat["inst_map"]
    assert inst.dtype == np.int32 and sorted(np.unique(inst)) == [0, 1, 2, 3, 4]
    assert mat["inst_type"].shape == (4, 1) and mat["inst_centroid"].shape == (4, 2)
    assert np.array_equal(mat["type_map"], t.class_map)
    # Ascending original ids 7, 8, 40, 300 are discs 1, 3, 0, 2.
    order = [1, 3, 0, 2]
    assert mat["inst_type"].ravel().tolist() == [CLASSES[k] for k in order]
    for row, k in enumerate(order):
        mask = t.inst_map == t.inst_map[int(CENTRES[k, 1]), int(CENTRES[k, 0])]
        assert np.array_equal(inst == row + 1, mask)
        rows, cols = np.nonzero(mask)
        assert np.allclose(mat["inst_centroid"][row], [cols.mean(), rows.mean()])


def fill(rings_xy, shape):
    """Rasterise corner-convention rings by pixel centres (QuPath's and COCO's reading):
    pixel (r, c) is inside when (c + 0.5, r + 0.5) is. cv2.fillPoly would also take every
    pixel the outline touches, a ring one pixel too wide."""
    mask = np.zeros(shape, bool)
    for r in rings_xy:
        mask |= polygon2mask(shape, (np.asarray(r) - 0.5)[:, ::-1])
    return mask


def test_qupath_geojson_polygons_rasterise_to_the_instances(tmp_path):
    t = make_triple()
    write_bundle(t, tmp_path / "b", formats=("geojson",))
    fc = json.loads((tmp_path / "b" / "qupath.geojson").read_text())
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 4
    for k, f in enumerate(fc["features"]):
        assert f["properties"]["objectType"] == "detection" and f["properties"]["isLocked"] is False
        cls = f["properties"]["classification"]
        assert cls == {"name": CONSEP.names[CLASSES[k]], "color": list(CONSEP.colours[CLASSES[k]])}
        assert f["geometry"]["type"] == "Polygon"
        ring = f["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1] and len(ring) >= 4
        assert np.array_equal(fill([ring], t.inst_map.shape), t.inst_map == k + 1)


def test_split_instance_becomes_a_multipolygon_and_unclassified_stays_so(tmp_path):
    t = make_triple()
    t.inst_map[5:8, 5:8] = 4  # a second, separate piece of instance 4
    t.inst_classes[3] = 0
    write_bundle(t, tmp_path / "b", formats=("geojson", "coco"))
    features = json.loads((tmp_path / "b" / "qupath.geojson").read_text())["features"]
    assert features[3]["geometry"]["type"] == "MultiPolygon"
    polys = features[3]["geometry"]["coordinates"]
    assert np.array_equal(fill([p[0] for p in polys], t.inst_map.shape), t.inst_map == 4)
    assert "classification" not in features[2]["properties"]
    coco = json.loads((tmp_path / "b" / "coco.json").read_text())
    assert [a["id"] for a in coco["annotations"]] == [1, 2, 4]
    assert coco["info"]["unclassified_instances_omitted"] == 1
    assert len(coco["annotations"][2]["segmentation"]) == 2


def test_coco_structure(tmp_path):
    t = make_triple()
    write_bundle(t, tmp_path / "b", formats=("coco",))
    coco = json.loads((tmp_path / "b" / "coco.json").read_text())
    assert coco["images"] == [{"id": 1, "file_name": "image.png", "width": 120, "height": 100}]
    assert [c["name"] for c in coco["categories"]] == list(CONSEP.nucleus_names)
    assert [c["id"] for c in coco["categories"]] == [1, 2, 3, 4]
    for k, a in enumerate(coco["annotations"]):
        mask = t.inst_map == k + 1
        rows, cols = np.nonzero(mask)
        assert a["category_id"] == CLASSES[k] and a["iscrowd"] == 0 and a["image_id"] == 1
        assert a["area"] == mask.sum()
        assert a["bbox"] == [cols.min(), rows.min(), np.ptp(cols) + 1, np.ptp(rows) + 1]
        poly = np.array(a["segmentation"][0]).reshape(-1, 2)
        assert len(poly) >= 3
        assert np.array_equal(fill([poly], mask.shape), mask)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' own numpy 2 notice
def test_coco_loads_in_pycocotools_and_rasterises_exactly(tmp_path):
    coco_api = pytest.importorskip("pycocotools.coco")
    mask_api = pytest.importorskip("pycocotools.mask")
    t = make_triple()
    write_bundle(t, tmp_path / "b", formats=("coco",))
    coco = coco_api.COCO(str(tmp_path / "b" / "coco.json"))
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert len(anns) == 4
    for ann in anns:
        assert np.array_equal(coco.annToMask(ann).astype(bool), t.inst_map == ann["id"])
        assert mask_api.toBbox(coco.annToRLE(ann)).tolist() == ann["bbox"]


def test_failed_write_leaves_nothing_and_keeps_the_old_bundle(tmp_path, monkeypatch):
    t = make_triple()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "coco_dict", boom)
    with pytest.raises(RuntimeError):
        write_bundle(t, tmp_path / "b")
    assert list(tmp_path.iterdir()) == []
    write_bundle(t, tmp_path / "b", formats=("png",))
    with pytest.raises(RuntimeError):
        write_bundle(t, tmp_path / "b", overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["b"]
    assert not (tmp_path / "b" / "hovernet.mat").exists() and (tmp_path / "b" / "inst.tif").exists()


def test_overwrite_and_argument_errors(tmp_path):
    t = make_triple()
    write_bundle(t, tmp_path / "b", formats=("png",))
    with pytest.raises(FileExistsError):
        write_bundle(t, tmp_path / "b")
    write_bundle(t, tmp_path / "b", formats=("npy",), overwrite=True)
    assert (tmp_path / "b" / "inst.npy").exists() and [p.name for p in tmp_path.iterdir()] == ["b"]
    with pytest.raises(ValueError, match="unknown export format"):
        write_bundle(t, tmp_path / "c", formats=("png", "tiff"))
    t.class_map[0, 0] = 9
    with pytest.raises(ValueError, match="class_map ids"):
        write_bundle(t, tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_zip_bundles(tmp_path):
    t = make_triple()
    dirs = [tmp_path / "s0", tmp_path / "s1"]
    for d in dirs:
        write_bundle(t, d, formats=("png",))
    z = zip_bundles(dirs, tmp_path / "out" / "all.zip")
    with zipfile.ZipFile(z) as zf:
        names = set(zf.namelist())
        assert "s0/image.png" in names and "s1/layout.json" in names and len(names) == 16
        assert json.loads(zf.read("s1/layout.json")) == t.layout.to_dict()
    with pytest.raises(ValueError, match="unique"):
        zip_bundles([dirs[0], dirs[0]], tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()


def test_json_safe():
    out = json_safe({1: np.arange(3), "f": float("nan"), "t": (np.bool_(True), np.float64(0.5)), "o": object})
    assert out == {"1": [0, 1, 2], "f": None, "t": [True, 0.5], "o": str(object)}
    json.dumps(out, allow_nan=False)


def test_the_instance_table_is_built_once_per_bundle(tmp_path, monkeypatch):
    calls = []
    real = export.instance_table
    monkeypatch.setattr(export, "instance_table", lambda *a: calls.append(1) or real(*a))
    write_bundle(make_triple(), tmp_path / "b")  # every format: instances.json, .mat, GeoJSON, COCO
    assert len(calls) == 1 and (tmp_path / "b" / "coco.json").is_file() and (tmp_path / "b" / "hovernet.mat").is_file()
