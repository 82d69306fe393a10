"""`--enrich` in `cosyn augment` and `cosyn sample`: the layouts are enriched before sampling, meta/ and the
bundles hold the enriched points, params record what was enriched, a bad request is one clear line."""

from __future__ import annotations

import json

import pytest

from cosyn.augment import (
    AugmentConfig,
    AugmentError,
    SamplingSettings,
    augment,
    load_source_tiles,
    plan_jobs,
    read_meta,
)
from cosyn.cli import main
from cosyn.core.layout import Layout, Point

FACTORS = {"inflammatory": 2.0, "other": 3.0}


def _totals(layouts: list[Layout]) -> dict[str, int]:
    return {name: sum(lay.counts()[name] for lay in layouts) for name in layouts[0].classes[1:]}


def test_enriched_jobs_are_the_plain_jobs_with_more_nuclei_of_the_named_classes(data):
    tiles, _ = load_source_tiles(data)
    plain = plan_jobs(tiles, 12, seed=5)
    rich = plan_jobs(tiles, 12, seed=5, enrich_factors=FACTORS)
    for a, b in zip(plain, rich, strict=True):
        # enrichment comes after the perturbations, from a stream of its own: the rest of the job is unchanged
        assert (a.seed, a.origin) == (b.seed, b.origin)
        assert b.layout.points[:len(a.layout.points)] == a.layout.points
        assert b.enrichment == {"factors": FACTORS, "counts_before": a.layout.counts(),
                                "counts_after": b.layout.counts()}
    before, after = _totals([j.layout for j in plain]), _totals([j.layout for j in rich])
    # about the factor: at most round(f · n) per tile, fewer only where a 64² tile has no room left
    assert 1.4 * before["inflammatory"] <= after["inflammatory"] <= 2 * before["inflammatory"]
    assert 2.0 * before["other"] <= after["other"] <= 3 * before["other"]
    assert (after["epithelial"], after["spindle"]) == (before["epithelial"], before["spindle"])
    again = plan_jobs(tiles, 12, seed=5, enrich_factors=FACTORS)
    assert [j.layout.to_dict() for j in again] == [j.layout.to_dict() for j in rich]  # a rerun is identical


def test_cli_augment_writes_the_enriched_layouts_and_records_the_enrichment(checkpoint, pipe, data, tmp_path):
    out = tmp_path / "syn"
    assert main(["augment", "--checkpoint", str(checkpoint), "--data", str(data), "--n", "3", "--out", str(out),
                 "--steps", "2", "--threads", "1", "--enrich", "inflammatory=2,other=3"]) == 0
    assert json.loads((out / "generation.json").read_text())["enrich"] == FACTORS
    tiles, _ = load_source_tiles(data)
    records = []
    for job in plan_jobs(tiles, 3, enrich_factors=FACTORS):
        meta = read_meta(out, job.name)
        record = meta["params"]["enrich"]
        assert record == job.enrichment
        assert Layout.from_dict(meta["layout"]).counts() == record["counts_after"]
        records.append(record)
    grown = {k: sum(r["counts_after"][k] - r["counts_before"][k] for r in records) for k in records[0]["factors"]}
    assert grown["inflammatory"] > 0 and grown["other"] > 0

    # the run's settings include the enrichment: another one is refused in that folder
    other = AugmentConfig(checkpoint=str(checkpoint), data=str(data), out=str(out), n=3,
                          sampling=SamplingSettings(steps=2), enrich={"inflammatory": 3.0})
    with pytest.raises(AugmentError, match="enrich"):
        augment(other, pipe=pipe, rank=0, world=1, progress=False)


@pytest.mark.parametrize(("spec", "message"), [
    ("bogus=2", "enrich 'bogus=2': unknown class 'bogus'; known: other, inflammatory, epithelial, spindle"),
    ("inflammatory=0.5", "enrich 'inflammatory=0.5': factor must be a finite number within 1..10"),
    ("inflammatory", "enrich 'inflammatory': expected CLASS=FACTOR"),
])
def test_a_bad_enrich_spec_is_one_line_naming_the_problem(checkpoint, data, tmp_path, capsys, spec, message):
    layout = tmp_path / "l.json"
    Layout(64, 64, ["background", "other", "inflammatory", "epithelial", "spindle"], [], 0.5).save(layout)
    for argv in (["augment", "--data", str(data), "--n", "1"], ["sample", "--layout", str(layout)]):
        rc = main([*argv, "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"), "--enrich", spec])
        err = capsys.readouterr().err
        assert rc == 2 and err == f"error: {message}\n"
    # refused before the run's settings or a bundle were written
    assert not (tmp_path / "o" / "generation.json").exists() and not (tmp_path / "o" / "000").exists()


def test_cli_sample_enriches_the_layout_its_bundles_hold(checkpoint, tmp_path):
    classes = ["background", "other", "inflammatory", "epithelial", "spindle"]
    points = [Point(12 + 12 * i, 14, "inflammatory") for i in range(3)] + \
             [Point(12 + 12 * i, 50, "epithelial") for i in range(3)]
    Layout(64, 64, classes, points, 0.5, "colon").save(tmp_path / "l.json")
    out = tmp_path / "out"
    assert main(["sample", "--checkpoint", str(checkpoint), "--layout", str(tmp_path / "l.json"), "--steps", "2",
                 "--seed", "4", "--formats", "png", "--out", str(out), "--enrich", "inflammatory=2"]) == 0
    params = json.loads((out / "000" / "params.json").read_text())
    counts = Layout.load(out / "000" / "layout.json").counts()
    assert params["enrich"]["factors"] == {"inflammatory": 2.0}
    assert params["enrich"]["counts_before"] == {"other": 0, "inflammatory": 3, "epithelial": 3, "spindle": 0}
    assert counts == params["enrich"]["counts_after"]
    assert 4 <= counts["inflammatory"] <= 6 and counts["epithelial"] == 3


def test_without_enrich_nothing_is_recorded(checkpoint, tmp_path):
    Layout(64, 64, ["background", "other", "inflammatory", "epithelial", "spindle"],
           [Point(20, 20, "inflammatory")], 0.5).save(tmp_path / "l.json")
    assert main(["sample", "--checkpoint", str(checkpoint), "--layout", str(tmp_path / "l.json"), "--steps", "1",
                 "--formats", "png", "--out", str(tmp_path / "out")]) == 0
    assert "enrich" not in json.loads((tmp_path / "out" / "000" / "params.json").read_text())
