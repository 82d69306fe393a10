"""Editing a real tile: only the region around the changed nuclei is regenerated."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import disc_sample
from tiny import tiny_pipeline, tiny_pipeline_with_refiner

from cosyn.core.layout import Layout, Point
from cosyn.data.targets import distance_map, layout_from_sample
from cosyn.editing import EditError, edit_tile
from cosyn.editing.edit import changed_positions
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


@pytest.mark.parametrize("make_pipe", [tiny_pipeline, tiny_pipeline_with_refiner])
def test_outside_the_edit_the_tile_is_kept_byte_for_byte(tile, make_pipe):
    original = layout_from_sample(tile)
    added = Point(58.0, 58.0, "inflammatory")  # a corner free of discs
    edited = _with_points(original, [*original.points, added])
    pipe = make_pipe()
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


def test_cli_edit_writes_a_bundle_that_keeps_the_tile_outside_the_edit(tile, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image

    from cosyn.data.formats.hovernet import write_hovernet

    write_hovernet([tile], tmp_path / "real")
    image, mat = tmp_path / "real/Images/tile_000.png", tmp_path / "real/Labels/tile_000.mat"
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
    assert params["edit"]["annotation"] == str(mat) and params["edit"]["region_pixels"] > 0
    again = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1])
    assert again.returncode == 2 and "exists; pass --overwrite" in again.stderr and "Traceback" not in again.stderr
