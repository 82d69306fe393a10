"""Editing a real tile: only the region around the changed nuclei is regenerated."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import disc_sample
from PIL import Image
from tiny import tiny_pipeline

from cosyn.core.layout import Layout, Point
from cosyn.core.maps import distance_map
from cosyn.data.formats.folder import write_folder
from cosyn.data.formats.hovernet import write_hovernet
from cosyn.data.sample import DataError
from cosyn.data.targets import layout_from_sample, triple_from_sample
from cosyn.editing import EditError, edit_tile
from cosyn.editing.annotation import read_annotated_tile
from cosyn.editing.edit import changed_positions
from cosyn.io.export import qupath_geojson
from cosyn.model.settings import SamplingSettings

FAST = SamplingSettings(steps=3, sampler="ddim", seed=1)


@pytest.fixture(scope="module")
def tile():
    return disc_sample(n=6, size=(64, 64), radius=5, seed=3)  # 0.25 µm/px, discs on a grid


def _with_points(layout: Layout, points: list[Point]) -> Layout:
    return Layout(layout.width, layout.height, layout.classes, points, layout.mpp, layout.tissue)


def test_changed_positions_are_the_added_removed_moved_and_reclassified_centroids():
    classes = ["background", "epithelial", "inflammatory"]
    before = Layout(64, 64, classes, [Point(10, 10, "epithelial"), Point(30, 30, "epithelial"),
                                      Point(50, 50, "epithelial"), Point(20, 50, "inflammatory")], 0.25)
    after = Layout(64, 64, classes, [Point(10.4, 10, "epithelial"),  # jitter below a pixel: unchanged
                                     Point(30, 30, "inflammatory"),  # reclassified
                                     Point(55, 50, "epithelial"),  # moved
                                     Point(5, 60, "inflammatory")], 0.25)  # added; (20, 50) removed
    got = {tuple(p) for p in changed_positions(before, after).tolist()}
    assert got == {(30, 30), (50, 50), (20, 50), (55, 50), (5, 60)}


def test_outside_the_edit_the_tile_is_kept_byte_for_byte(tile):
    original = layout_from_sample(tile)
    added = Point(58.0, 58.0, "inflammatory")  # a corner free of discs
    edited = _with_points(original, [*original.points, added])
    pipe = tiny_pipeline()
    out = edit_tile(pipe, tile, edited, settings=FAST)
    region = out.params["edit"]["region_pixels"]
    assert 0 < region < 64 * 64 / 2
    yy, xx = np.indices((64, 64))
    outside = (xx - 58) ** 2 + (yy - 58) ** 2 > (8 / 0.25) ** 2  # beyond the 8 µm margin
    assert out.image.shape == tile.image.shape
    assert np.array_equal(out.image[outside], tile.image[outside])
    assert np.array_equal(out.class_map[outside], tile.class_map[outside])
    assert np.array_equal(out.inst_map[outside], tile.inst_map[outside])
    assert np.array_equal(out.dist_map[outside], distance_map(tile.inst_map)[outside])
    # the tile's untouched nuclei keep their ids and classes; new ones come above them
    kept = {int(i): int(c) for i, c in zip(tile.inst_ids, tile.inst_classes, strict=True)
            if outside[tile.inst_map == i].all()}
    assert kept and all(out.inst_classes[i] == c for i, c in kept.items())
    assert all(i > tile.inst_map.max() for i in set(out.inst_classes) - set(kept))
    assert out.layout is edited and out.params["stages"][0] == "base"


def test_a_mask_covers_whole_nuclei_and_bad_edits_are_refused(tile):
    pipe = tiny_pipeline()
    original = layout_from_sample(tile)
    first = int(tile.inst_ids[0])
    mask = np.zeros((64, 64), bool)
    ys, xs = np.nonzero(tile.inst_map == first)
    mask[ys[0], xs[0]] = True  # one pixel of a nucleus: the whole nucleus is regenerated
    out = edit_tile(pipe, tile, original, mask=mask, settings=FAST)
    assert out.params["edit"]["region_pixels"] == int((tile.inst_map == first).sum())
    assert first not in out.inst_classes
    with pytest.raises(EditError, match="changes no nucleus"):
        edit_tile(pipe, tile, original)
    with pytest.raises(EditError, match="at 0.5 µm/px, the tile at 0.25"):
        edit_tile(pipe, tile, Layout(64, 64, original.classes, original.points, 0.5))
    with pytest.raises(EditError, match="the mask is 32x32 px"):
        edit_tile(pipe, tile, original, mask=np.ones((32, 32), bool))


def test_a_qupath_geojson_reads_back_as_the_tile_it_was_exported_from(tile, tmp_path):
    Image.fromarray(tile.image).save(tmp_path / "tile.png")
    (tmp_path / "tile.geojson").write_text(json.dumps(qupath_geojson(triple_from_sample(tile))))
    back = read_annotated_tile(tmp_path / "tile.png", [tmp_path / "tile.geojson"], tile.classes, 0.25)
    assert np.array_equal(back.inst_map > 0, tile.inst_map > 0)  # outlines rasterise to the same pixels
    assert np.array_equal(back.class_map, tile.class_map)
    assert len(back.inst_ids) == len(tile.inst_ids) and back.mpp == 0.25
    assert np.allclose(np.sort(back.centroids, axis=0), np.sort(tile.centroids, axis=0))


def test_the_other_annotation_forms_read_as_the_same_tile_and_bad_ones_say_why(tile, tmp_path):
    write_hovernet([tile], tmp_path / "hn")
    write_folder([tile], tmp_path / "maps")
    image = tmp_path / "hn/Images/tile_000.png"
    from_mat = read_annotated_tile(image, [tmp_path / "hn/Labels/tile_000.mat"], tile.classes, 0.25)
    maps = [tmp_path / "maps/instances/tile_000.tif", tmp_path / "maps/classes/tile_000.png"]
    from_maps = read_annotated_tile(image, maps, tile.classes, 0.25)
    for read in (from_mat, from_maps):
        assert np.array_equal(read.inst_map, tile.inst_map) and np.array_equal(read.class_map, tile.class_map)
    with pytest.raises(DataError, match="tile_000.tif: an instance map needs its class map"):
        read_annotated_tile(image, maps[:1], tile.classes, 0.25)
    with pytest.raises(DataError, match="notes.txt: the annotation must be a HoVer-Net .mat"):
        read_annotated_tile(image, [tmp_path / "notes.txt"], tile.classes, 0.25)
    points = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 5]},
         "properties": {"objectType": "detection", "classification": {"name": "epithelial"}}}]}
    (tmp_path / "points.geojson").write_text(json.dumps(points))
    with pytest.raises(DataError, match="points.geojson: feature 0: a point has no outline"):
        read_annotated_tile(image, [tmp_path / "points.geojson"], tile.classes, 0.25)
    far = {"type": "Feature", "properties": {"objectType": "detection", "classification": {"name": "epithelial"}},
           "geometry": {"type": "Polygon", "coordinates": [[[500, 500], [510, 500], [510, 510], [500, 500]]]}}
    region = {**far, "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}}}
    (tmp_path / "far.geojson").write_text(json.dumps([region, far]))
    with pytest.raises(DataError, match="none of its 1 nucleus outlines lies inside the 64x64 image"):
        read_annotated_tile(image, [tmp_path / "far.geojson"], tile.classes, 0.25)


@pytest.mark.parametrize("annotation", ["mat", "geojson"])
def test_cli_edit_writes_a_bundle_that_keeps_the_tile_outside_the_edit(tile, tmp_path, annotation):
    import subprocess
    import sys
    from pathlib import Path

    write_hovernet([tile], tmp_path / "real")
    image, mat = tmp_path / "real/Images/tile_000.png", tmp_path / "real/Labels/tile_000.mat"
    if annotation == "geojson":
        mat = tmp_path / "real/tile_000.geojson"
        mat.write_text(json.dumps(qupath_geojson(triple_from_sample(tile))))
    tiny_pipeline().save_pretrained(tmp_path / "ck")
    original = layout_from_sample(tile)
    edited = _with_points(original, [*original.points, Point(58.0, 58.0, "inflammatory")])
    edited.save(tmp_path / "edited.json")
    args = [sys.executable, "-m", "cosyn", "edit", "--checkpoint", str(tmp_path / "ck"), "--image", str(image),
            "--annotation", str(mat), "--layout", str(tmp_path / "edited.json"), "--out", str(tmp_path / "out"),
            "--steps", "3", "--sampler", "ddim"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr
    assert "added" in done.stdout and "kept" in done.stdout
    out = np.asarray(Image.open(tmp_path / "out/image.png"))
    yy, xx = np.indices((64, 64))
    outside = (xx - 58) ** 2 + (yy - 58) ** 2 > 32**2
    assert np.array_equal(out[outside], np.asarray(Image.open(image))[outside])
    params = json.loads((tmp_path / "out/params.json").read_text())
    assert params["edit"]["annotation"] == [str(mat)] and params["edit"]["region_pixels"] > 0
    again = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1])
    assert again.returncode == 2 and "exists; pass --overwrite" in again.stderr and "Traceback" not in again.stderr
    # --overwrite replaces --out whole: a folder holding the tile being edited is refused, the tile kept
    over = [*args[:args.index("--out")], "--out", str(tmp_path / "real"), "--overwrite"]
    refused = subprocess.run(over, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1])
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"--out {tmp_path / 'real'} contains the input {image}" in refused.stderr and image.is_file()


def test_with_the_texture_stage_an_added_nucleus_is_a_real_one_in_the_kept_tissue(tile, tmp_path):
    from test_texture_stage import CLASSES, synthetic_tile

    from cosyn.stages.texture import TextureBank, TextureStage, load_bank, save_bank

    assert list(tile.classes.names) == CLASSES
    rng = np.random.default_rng(0)
    bank = tmp_path / "texture_bank.safetensors"
    save_bank(TextureBank([synthetic_tile(rng, f"t{i}", "s") for i in range(3)], 0.25, CLASSES, "test"), bank)
    pipe = tiny_pipeline()
    pipe.second_stage = TextureStage(load_bank(bank), bank_path=bank)
    original = layout_from_sample(tile)
    edited = _with_points(original, [*original.points, Point(58.0, 58.0, "inflammatory")])
    out = edit_tile(pipe, tile, edited, settings=FAST)
    yy, xx = np.indices((64, 64))
    outside = (xx - 58) ** 2 + (yy - 58) ** 2 > (8 / 0.25) ** 2
    assert np.array_equal(out.image[outside], tile.image[outside])
    assert np.array_equal(out.inst_map[outside], tile.inst_map[outside])
    new = int(out.inst_map[58, 58])
    assert new > tile.inst_map.max() and out.inst_classes[new] == CLASSES.index("inflammatory")
    nucleus = out.inst_map == new
    ring = (np.hypot(xx - 58, yy - 58) < 12) & (out.inst_map == 0)
    assert out.image[nucleus].mean() < out.image[ring].mean() - 40  # the bank's dark nucleus, on its label
    assert out.params["stages"] == ["base", "texture"] and out.params["seed"] == FAST.seed
