"""The studio's real tile for editing: kept beside the browser's results, uploads, the brushed region."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import disc_sample
from PIL import Image

from cosyn.core.layout import Layout
from cosyn.data.sample import DataError
from cosyn.data.targets import triple_from_sample
from cosyn.io.export import qupath_geojson
from cosyn.studio.paths import PathError
from cosyn.studio.real_tile import brush_mask, keep_tile, kept_tile, uploaded_tile

TILE = disc_sample(n=6, size=(64, 64), radius=5, seed=3)


def test_a_kept_tile_reads_back_whole_and_only_from_inside_the_outputs(tmp_path):
    source = keep_tile(TILE, tmp_path / "out" / "browser")
    back = kept_tile(source, tmp_path / "out")
    assert np.array_equal(back.image, TILE.image) and np.array_equal(back.inst_map, TILE.inst_map)
    assert back.mpp == TILE.mpp and back.name == TILE.name
    assert Image.open(source["image"]).size == (64, 64)
    with pytest.raises(PathError):
        kept_tile({**source, "folder": str(tmp_path)}, tmp_path / "out")
    with pytest.raises(DataError, match="Load a real tile first"):
        kept_tile(None, tmp_path / "out")


def test_an_uploaded_tile_takes_the_canvas_scale_and_errors_name_the_users_file(tmp_path):
    Image.fromarray(TILE.image).save(tmp_path / "tile.png")
    (tmp_path / "tile.geojson").write_text(json.dumps(qupath_geojson(triple_from_sample(TILE))))
    canvas = Layout(64, 64, TILE.classes.to_list(), [], 0.5, "colon")
    tile = uploaded_tile(tmp_path / "tile.png", [tmp_path / "tile.geojson"], canvas, TILE.classes, 2**20)
    assert tile.mpp == 0.5 and tile.tissue == "colon" and len(tile.inst_ids) == len(TILE.inst_ids)
    (tmp_path / "bad.geojson").write_text("{")
    with pytest.raises(DataError) as e:
        uploaded_tile(tmp_path / "tile.png", [tmp_path / "bad.geojson"], canvas, TILE.classes, 2**20)
    assert str(e.value).startswith("bad.geojson: not valid JSON") and str(tmp_path) not in str(e.value)
    with pytest.raises(DataError, match="Upload the tile's image and its annotation"):
        uploaded_tile(tmp_path / "tile.png", [], canvas, TILE.classes, 2**20)
    with pytest.raises(PathError, match="over the upload limit"):
        uploaded_tile(tmp_path / "tile.png", [tmp_path / "tile.geojson"], canvas, TILE.classes, 100)


def test_the_brush_mask_is_where_any_layer_is_painted_at_the_tiles_size():
    layer = np.zeros((128, 128, 4), np.uint8)
    assert brush_mask(None, (64, 64)) is None
    assert brush_mask({"background": None, "layers": [layer], "composite": None}, (64, 64)) is None
    layer[20:40, 10:30, 3] = 255
    mask = brush_mask({"layers": [layer]}, (64, 64))  # the editor worked on a 2x view of the tile
    assert mask.shape == (64, 64) and mask[10:20, 5:15].all() and mask.sum() == 100
