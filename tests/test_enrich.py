"""Rare-class enrichment of layouts (cosyn.core.enrich): counts, spacing, canvas, untouched points, parsing."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED_DATA

from cosyn.core.classes import ClassSet
from cosyn.core.enrich import EnrichError, enrich_layout, parse_enrich, spacings
from cosyn.core.layout import Layout

CLASSES = ["background", "other", "inflammatory", "epithelial", "spindle"]


def grid_layout(counts: dict[str, int], step: float = 24.0, size: int = 256, seed: int = 0) -> Layout:
    """Points on a jittered grid `step` px apart, classes shuffled over it, at 0.25 µm/px."""
    rng = np.random.default_rng(seed)
    cells = [(x, y) for y in np.arange(step / 2, size, step) for x in np.arange(step / 2, size, step)]
    names = [n for n, k in counts.items() for _ in range(k)]
    picks = rng.choice(len(cells), size=len(names), replace=False)
    xy = np.array([cells[i] for i in picks]) + rng.uniform(-3, 3, (len(names), 2))
    ids = np.array([CLASSES.index(n) for n in rng.permutation(names)])
    return Layout.from_arrays(size, size, CLASSES, xy, ids, mpp=0.25)


def min_distance_to_new(before: Layout, after: Layout) -> float:
    xy = after.xy()
    new = xy[len(before.points):]
    d = np.hypot(*(new[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    d[np.arange(len(new)), len(before.points) + np.arange(len(new))] = np.inf  # a point and itself
    return float(d.min())


def test_counts_come_out_near_the_factors_and_other_classes_stay():
    layout = grid_layout({"epithelial": 20, "inflammatory": 10, "other": 5, "spindle": 5})
    out = enrich_layout(layout, {"inflammatory": 2, "other": 3}, np.random.default_rng(1))
    counts = out.counts()
    assert 18 <= counts["inflammatory"] <= 20 and 13 <= counts["other"] <= 15
    assert counts["epithelial"] == 20 and counts["spindle"] == 5


def test_existing_points_keep_place_and_class_and_new_ones_keep_the_spacing_inside_the_canvas():
    layout = grid_layout({"epithelial": 20, "inflammatory": 10, "other": 5, "spindle": 5})
    out = enrich_layout(layout, {"inflammatory": 3}, np.random.default_rng(2))
    assert out.points[:len(layout.points)] == layout.points
    minimum, _ = spacings(layout)
    assert minimum >= 3.0 / 0.25  # never closer than HoVer-Net's 3 µm pairing radius
    assert min_distance_to_new(layout, out) >= minimum
    xy = out.xy()
    assert np.all((xy >= 0) & (xy < [out.width, out.height]))


def test_a_crowded_tile_stays_below_target_rather_than_breaking_the_spacing():
    layout = grid_layout({"epithelial": 60, "inflammatory": 40}, step=16, size=160)
    out = enrich_layout(layout, {"inflammatory": 10}, np.random.default_rng(3))
    minimum, _ = spacings(layout)
    assert len(out.points) > len(layout.points)
    assert out.counts()["inflammatory"] < 400
    assert min_distance_to_new(layout, out) >= minimum


def test_an_absent_class_takes_over_nuclei_of_the_commonest_other_class():
    layout = grid_layout({"epithelial": 20, "spindle": 12, "other": 4})
    out = enrich_layout(layout, {"inflammatory": 3}, np.random.default_rng(4))
    before, after = layout.counts(), out.counts()
    assert after["inflammatory"] == 2 and after["epithelial"] == 18  # round(3 - 1) swapped from the commonest
    assert after["spindle"] == 12 and after["other"] == 4
    assert np.array_equal(out.xy(), layout.xy())  # swaps move nothing
    assert sum(after.values()) == sum(before.values())


def test_factor_one_changes_nothing_and_a_seed_gives_one_layout():
    layout = grid_layout({"epithelial": 20, "inflammatory": 10})
    assert enrich_layout(layout, {"inflammatory": 1}, np.random.default_rng(5)).points == layout.points
    a, b = (enrich_layout(layout, {"inflammatory": 2.5}, np.random.default_rng(6)) for _ in range(2))
    assert a.points == b.points


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"real CoNSeP patches not found at {SHARED_DATA}")
def test_real_consep_layouts_get_about_twice_the_inflammatory_nuclei():
    from cosyn.data.formats import read_dataset
    from cosyn.data.targets import layout_from_sample

    seq = read_dataset(SHARED_DATA)
    rng = np.random.default_rng(7)
    before = after = 0
    for i in range(0, len(seq), 27):
        layout = layout_from_sample(seq[i])
        out = enrich_layout(layout, {"inflammatory": 2}, rng)
        n = layout.counts()["inflammatory"]
        if n:  # a tile without any takes one over from its commonest class instead (other test)
            assert out.points[:len(layout.points)] == layout.points
            before, after = before + n, after + out.counts()["inflammatory"]
    assert before > 0 and 1.7 * before <= after <= 2 * before


def test_parse_enrich_reads_names_and_factors():
    assert parse_enrich(" Inflammatory = 2, other=3.5", ClassSet(tuple(CLASSES))) == {"inflammatory": 2.0,
                                                                                      "other": 3.5}


@pytest.mark.parametrize(("text", "message"), [
    ("neutrophil=2", "unknown class 'neutrophil'"),
    ("inflammatory=nan", "finite number within 1..10"),
    ("inflammatory=inf", "finite number within 1..10"),
    ("inflammatory=0.5", "finite number within 1..10"),
    ("inflammatory=11", "finite number within 1..10"),
    ("inflammatory=two", "is not a number"),
    ("inflammatory", "expected CLASS=FACTOR"),
    ("inflammatory=2,", "empty item"),
    ("inflammatory=2,inflammatory=3", "given twice"),
    ("background=2", "unknown class 'background'"),
])
def test_parse_enrich_names_the_bad_part(text, message):
    with pytest.raises(EnrichError, match=message):
        parse_enrich(text, CLASSES)


def test_enrich_layout_refuses_unknown_classes_and_bad_factors():
    layout = grid_layout({"epithelial": 4})
    with pytest.raises(EnrichError, match="unknown classes"):
        enrich_layout(layout, {"neutrophil": 2}, np.random.default_rng(0))
    with pytest.raises(EnrichError, match="within 1..10"):
        enrich_layout(layout, {"epithelial": 0.5}, np.random.default_rng(0))
