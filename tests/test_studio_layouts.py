"""Studio layout sources: random layouts (spacing, density, class mix), examples, presets, fitting."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from conftest import disc_sample

from cosyn.core.classes import CONSEP
from cosyn.core.layout import Layout, LayoutError, Point
from cosyn.data.formats import write_dataset
from cosyn.data.sample import DataError
from cosyn.studio import sources
from cosyn.studio.models import max_side
from cosyn.studio.paths import PathError
from cosyn.studio.random_layout import random_layout_of_density, requested_count, spacing_px

CLASSES = CONSEP.to_list()
EVEN = {c: 1.0 for c in CLASSES[1:]}


def _min_gap(layout: Layout) -> float:
    """Smallest distance minus the required spacing over all pairs (>= 0: no overlaps)."""
    mpp = layout.mpp
    return min(np.hypot(a.x - b.x, a.y - b.y) - spacing_px(a.cls, b.cls, mpp)
               for a, b in itertools.combinations(layout.points, 2))


@pytest.mark.parametrize("density", [0.3, 1.0, 2.5])
def test_random_layout_has_the_requested_count_and_no_overlaps(density):
    layout = random_layout_of_density(256, 256, 0.25, CLASSES, density, EVEN, seed=1, tissue="colon")
    assert len(layout.points) == requested_count(256, 256, 0.25, density) > 0
    assert _min_gap(layout) >= 0
    assert all(0 <= p.x < 256 and 0 <= p.y < 256 for p in layout.points)
    assert (layout.mpp, layout.tissue, layout.classes) == (0.25, "colon", CLASSES)


def test_a_full_canvas_places_fewer_nuclei_but_still_none_overlapping():
    layout = random_layout_of_density(128, 128, 0.25, CLASSES, 15.0, EVEN, seed=0)
    assert 0 < len(layout.points) < requested_count(128, 128, 0.25, 15.0)
    assert _min_gap(layout) >= 0


def test_class_mix_sets_the_proportions():
    only = random_layout_of_density(256, 256, 0.25, CLASSES, 1.0, {"epithelial": 1.0}, seed=2)
    assert {p.cls for p in only.points} == {"epithelial"}
    mixed = random_layout_of_density(512, 512, 0.25, CLASSES, 1.0, {"inflammatory": 3.0, "spindle": 1.0}, seed=3)
    counts = mixed.counts()
    share = counts["inflammatory"] / len(mixed.points)
    assert counts["other"] == counts["epithelial"] == 0
    assert 0.68 < share < 0.82  # 0.75 expected; n = 655 gives a standard error of 0.017


def test_random_layout_is_reproducible_and_rejects_a_zero_mix():
    a = random_layout_of_density(128, 128, 0.25, CLASSES, 1.0, EVEN, seed=7)
    assert a == random_layout_of_density(128, 128, 0.25, CLASSES, 1.0, EVEN, seed=7)
    assert a != random_layout_of_density(128, 128, 0.25, CLASSES, 1.0, EVEN, seed=8)
    with pytest.raises(LayoutError, match="class mix is all zero"):
        random_layout_of_density(128, 128, 0.25, CLASSES, 1.0, {c: 0 for c in CLASSES[1:]})


def test_example_layouts_are_valid_consep_layouts():
    examples = sources.example_layouts()
    assert len(examples) >= 2
    for path in examples.values():
        layout = Layout.load(path)
        assert (layout.width, layout.height, layout.mpp, layout.classes) == (256, 256, 0.25, CLASSES)
        assert len(layout.points) > 20


def test_presets_are_prompts():
    presets = sources.presets()
    assert presets and all(p.startswith("high quality histopathology") for p in presets.values())


def test_fit_conforms_classes_and_crops_to_the_limit():
    pts = [Point(10, 10, "epithelial"), Point(300, 10, "spindle"), Point(20, 20, "neoplastic")]
    layout = Layout(400, 400, ["background", "epithelial", "spindle", "neoplastic"], pts, 0.25)
    out, notes = sources.fit(layout, CLASSES, side_limit=256)
    assert (out.width, out.height) == (256, 256) and out.classes == CLASSES
    assert [p.cls for p in out.points] == ["epithelial"]
    assert any("neoplastic" in n for n in notes) and any("cropped to 256×256" in n for n in notes)


def test_max_side_converts_the_model_limit_to_layout_pixels():
    assert max_side(1024, 0.5, 0.25) == 2048
    assert max_side(512, 0.5, 0.5) == 512
    assert max_side(512, 0.5, None) == 512


def test_uploads_in_every_layout_format_come_back_at_the_canvas_scale_and_are_size_limited(tmp_path):
    layout = Layout.load(sources.example_layouts()["colon_mixed_stroma"])
    canvas = Layout(256, 256, CLASSES, [], mpp=0.25, tissue="colon")
    assert layout.mpp == 0.25  # so the .json layout's own scale and the canvas's agree below
    for fmt in sources.LAYOUT_FORMATS:
        path = sources.layout_file(layout, fmt, tmp_path / fmt.replace(" ", "_"))
        back = sources.uploaded_layout(path, canvas, "other", max_bytes=10**6)
        assert [(round(p.x, 3), round(p.y, 3), p.cls) for p in back.points] == \
            [(round(p.x, 3), round(p.y, 3), p.cls) for p in layout.points]
        # GeoJSON and .mat carry no scale: without the canvas's they would be read at the model's 0.5 µm/px
        assert (back.mpp, back.tissue) == (0.25, "colon"), fmt
    with pytest.raises(PathError, match="over the upload limit"):
        sources.uploaded_layout(path, canvas, "other", max_bytes=100)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(LayoutError, match="upload a .json layout"):
        sources.uploaded_layout(tmp_path / "notes.txt", canvas, "other", max_bytes=100)


@pytest.mark.parametrize("name, content, message", [
    ("cells.json", b"{\"width\": 64,", "cells.json: not valid JSON (Expecting"),
    ("cells.json", b"\x89PNG\r\n\x1a\n\x00\xff", "cells.json: not a text file, so not JSON"),
    ("cells.geojson", b"[1, 2]", "cells.geojson"),
    ("cells.mat", b"MATLAB? no", "cells.mat: not a readable .mat"),
])
def test_a_bad_upload_is_named_by_its_file_name_not_the_servers_upload_folder(tmp_path, name, content, message):
    upload = tmp_path / "gradio" / "3f9a7c1e" / name  # where Gradio puts an upload
    upload.parent.mkdir(parents=True)
    upload.write_bytes(content)
    canvas = Layout(256, 256, CLASSES, [], mpp=0.25, tissue="colon")
    with pytest.raises(LayoutError, match=re.escape(message)) as e:
        sources.uploaded_layout(upload, canvas, "other", max_bytes=10**6)
    assert str(upload.parent) not in str(e.value) and "Traceback" not in str(e.value)


def test_a_dataset_sample_gives_its_centroids(tmp_path):
    sample = disc_sample(n=6, size=(64, 64))
    write_dataset([sample], tmp_path / "ds", "folder")
    layout = sources.dataset_sample(tmp_path / "ds", 0)
    assert np.allclose(layout.xy(), sample.centroids) and layout.mpp == 0.25
    with pytest.raises(DataError, match="there is no sample 3"):
        sources.dataset_sample(tmp_path / "ds", 3)


def test_pasted_layout_json_is_parsed_checked_and_size_limited():
    text = Layout.load(sources.example_layouts()["colon_mixed_stroma"]).to_json()
    assert len(sources.pasted_layout(text, len(text.encode()), "layout JSON").points) > 0
    with pytest.raises(LayoutError, match="layout JSON is over the upload limit"):
        sources.pasted_layout(text, len(text.encode()) - 1, "layout JSON")
    with pytest.raises(LayoutError, match="layout JSON is not valid JSON"):
        sources.pasted_layout("{", 100, "layout JSON")
    with pytest.raises(LayoutError, match="layout JSON"):
        sources.pasted_layout('{"width": 64}', 100, "layout JSON")


def test_pasted_json_nested_100k_deep_is_refused_not_a_crash():
    with pytest.raises(LayoutError, match="layout_json: JSON nested too deeply"):
        sources.pasted_layout("[" * 100_000 + "]" * 100_000, 10**7, "layout_json")
