"""`cosyn evaluate` end to end on disc fixtures, and the realism measures it reports."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
from conftest import disc_sample

from cosyn.augment import AugmentConfig, augment
from cosyn.cli import build_parser
from cosyn.evaluation.evaluate import (
    SECTIONS,
    EvalConfig,
    Generated,
    RealData,
    bars,
    evaluate,
    fidelity,
    generation_jobs,
    realism,
    to_markdown,
)
from cosyn.evaluation.realism import (
    INCEPTION_PACKAGE,
    frechet_distance,
    inception_features,
    kernel_inception_distance,
    morphology_distances,
    naive_baseline,
    nucleus_morphology,
)
from cosyn.model.settings import SamplingSettings
from cosyn.segmentation import SegTrainConfig

FAST = SamplingSettings(steps=2, guidance=2.0)


# -- realism ---------------------------------------------------------------------------------------------
def test_inception_weights_load_offline_from_the_wheel():
    feats = inception_features([np.full((64, 64, 3), v, np.uint8) for v in (40, 200)])
    assert feats.shape == (2, 2048) and np.isfinite(feats).all()
    assert not np.allclose(feats[0], feats[1])
    assert INCEPTION_PACKAGE not in sys.modules  # its loader can download; we only read its file


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    feats = inception_features(images)
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-6)
    darker = inception_features([(im * 0.4).astype(np.uint8) for im in images])
    assert frechet_distance(feats, darker) > 1.0


@pytest.mark.parametrize("n", [(30, 40), (300, 250)])  # fewer and more samples than dimensions
def test_frechet_distance_matches_the_matrix_square_root_formula(n):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(n[0], 50)), rng.normal(0.3, 1.2, size=(n[1], 50))
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = np.real(scipy.linalg.sqrtm(s1 @ s2))
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s1 + s2 - 2 * root)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(200, 64)), rng.normal(size=(200, 64))
    same, _ = kernel_inception_distance(a, b, subsets=20, subset_size=100)
    shifted, _ = kernel_inception_distance(a, b + 0.5, subsets=20, subset_size=100)
    assert abs(same) < 0.05 < shifted


def test_kid_has_a_spread_only_when_the_subsets_can_differ():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(24, 16)), rng.normal(0.2, 1.0, size=(24, 16))
    whole, std = kernel_inception_distance(a, b, subsets=10)  # every subset would be the whole set
    assert std is None
    halves, half_std = kernel_inception_distance(a, b, subsets=50, subset_size=12)
    assert half_std > 0 and halves == pytest.approx(whole, abs=3 * half_std)  # unbiased at any subset size


def test_naive_baseline_paints_class_means_into_the_label():
    s = disc_sample(n=9, size=(64, 64), radius=5)
    out = naive_baseline(s.image, s.class_map)
    assert out.shape == s.image.shape and out.dtype == np.uint8
    for c in np.unique(s.class_map):
        mask = s.class_map == c
        np.testing.assert_array_equal(out[mask], np.rint(s.image[mask].mean(0)).astype(np.uint8)[None].repeat(
            mask.sum(), 0))
    assert out[s.class_map > 0].mean() < out[s.class_map == 0].mean()  # dark nuclei, pale background
    other = np.zeros_like(s.class_map)
    other[:8, :8] = 1
    painted = naive_baseline(s.image, s.class_map, paint_on=other)
    np.testing.assert_array_equal(painted[0, 0], out[s.class_map == 1][0])


def test_morphology_of_discs_and_distances():
    s = disc_sample(n=4, size=(64, 64), radius=6)
    classes = dict(zip(s.inst_ids.tolist(), s.inst_classes.tolist(), strict=True))
    morph = nucleus_morphology(s.inst_map, classes, mpp=0.5)
    area_px = (s.inst_map == s.inst_ids[0]).sum()
    assert set(morph) == {1, 2, 3, 4}
    np.testing.assert_allclose(morph[1][0], [area_px * 0.25, 0.0, 1.0], atol=0.15)
    same = morphology_distances(morph, morph, ["background", "other", "inflammatory", "epithelial", "spindle"])
    assert all(v["area"] == 0 and v["n_real"] == 1 for v in same.values())


# -- evaluate end to end ---------------------------------------------------------------------------------
def test_fidelity_counts_seeded_centroids(data, pipe):
    from cosyn.data.dataset import resample_sample
    from cosyn.data.formats import read_dataset

    real = resample_sample(read_dataset(data, "folder")[0], 0.5)
    job = generation_jobs([real], 1, seed=0)[0]
    triple = pipe.sample(job.layout, steps=2, seed=0)[0]
    from cosyn.data.sample import sample_from_triple

    sample = sample_from_triple(triple, "g", "x", pipe.class_set, 0.5)
    g = Generated(sample, triple.layout, triple.params["missed_indices"], triple.inst_classes, real)
    f = fidelity([g], pipe.class_set, 0.5)
    n = len(job.layout.points)
    assert f["centroids"] == n
    assert f["yield"] == pytest.approx(1 - triple.params["missed_centroids"] / n)
    # perfect classes when the pipeline's classes are the requested ones
    k = 0
    for i, c in enumerate(triple.layout.class_ids()):
        if i not in triple.params["missed_indices"]:
            k += 1
            g.inst_classes[k] = int(c)
    assert fidelity([g], pipe.class_set, 0.5)["class_agreement"] == 1.0

    # by hand: 4 centroids, the second missed; instances 1..3 seed from centroids 0, 2, 3 in order
    from cosyn.core.layout import Layout, Point

    names = list(pipe.class_set.names)
    four = Layout(64, 64, names, [Point(8, 8, "epithelial"), Point(20, 8, "spindle"), Point(32, 8, "other"),
                                  Point(44, 8, "inflammatory")], mpp=0.5)
    ids = {n: names.index(n) for n in names}
    hand = Generated(sample, four, [1], {1: ids["epithelial"], 2: ids["spindle"], 3: ids["inflammatory"]}, real)
    f = fidelity([hand], pipe.class_set, 0.5)
    assert (f["centroids"], f["yield"], f["class_agreement"]) == (4, 0.75, pytest.approx(2 / 3))
    assert f["per_class"]["other"] == {"requested": 1, "yield": 1.0, "class_agreement": 0.0}
    assert f["per_class"]["spindle"]["yield"] == 0.0


def test_evaluate_end_to_end_writes_every_section(checkpoint, pipe, data, tmp_path):
    syn = tmp_path / "syn"
    augment(AugmentConfig(str(checkpoint), str(data), str(syn), n=3, sampling=FAST), pipe=pipe, rank=0, world=1,
            progress=False)
    cfg = EvalConfig(checkpoint=str(checkpoint), data=str(data), out=str(tmp_path / "eval"), sampling=FAST,
                     sections=SECTIONS, segmenter_train=SegTrainConfig(steps=4, batch=2, crop=32),
                     seeds=3, synthetic=str(syn), speed_runs=1)
    report = evaluate(cfg, pipe=pipe)
    out = Path(cfg.out)
    saved = json.loads((out / "report.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert {"fidelity", "consistency", "realism", "downstream", "speed", "bars"} <= set(saved)
    assert saved["data"]["evaluated_tiles"] == 2 and saved["fidelity"]["tiles"] == 2
    assert set(saved["fidelity"]) >= {"yield", "class_agreement", "prompted_fraction", "paired", "per_class"}
    assert set(saved["consistency"]) >= {"real", "generated", "pq_ratio"}
    assert {"pq", "mpq_plus", "dice", "aji", "f1_d", "f1_c"} <= set(saved["consistency"]["real"])
    for name in ("generated", "naive_baseline", "real_floor"):
        assert set(saved["realism"][name]) == {"n", "fid", "kid", "kid_std"}
    assert set(saved["realism"]["morphology"]["epithelial"]) >= {"area", "eccentricity", "solidity"}
    summary = saved["downstream"]["summary"]
    assert set(summary) == {"dice", "aji", "pq", "mpq_plus", "f1_d", "f1_c_mean"}
    assert len(saved["downstream"]["runs"]["real"]) == 3
    assert set(summary["dice"]) == {"real_mean", "real_std", "augmented_mean", "augmented_std", "diff_mean",
                                    "diff_std"}
    assert saved["speed"]["runs"] == 1 and saved["speed"]["canvas"].startswith("32x32")
    assert set(saved["bars"]) == {"layout_yield", "layout_class", "consistency_pq_ratio", "fid_below_naive",
                                  "speed_s"}
    md = (out / "report.md").read_text()
    assert "skipped" in saved["realism"]["c2st"]  # the fixture's split is one source tile: no held-out source
    for heading in ("Layout fidelity", "consistency", "Realism", "Classifier two-sample test", "Downstream", "Speed",
                    "grid.png"):
        assert heading in md
    for fig in ("grid.png", "morphology.png"):
        assert (out / fig).stat().st_size > 1000
    # a second run reuses the generated tiles and segmenters, and keeps the sections it did not rerun
    again = evaluate(EvalConfig(**{**cfg.__dict__, "sections": ("fidelity", "consistency")}), pipe=pipe)
    assert again["fidelity"] == saved["fidelity"]
    assert again["consistency"]["real"] == saved["consistency"]["real"]
    assert again["carried_over"] == ["realism", "downstream", "speed"] and again["realism"] == saved["realism"]
    assert set(again["bars"]) == set(saved["bars"])
    assert "Downstream" in (out / "report.md").read_text()


def test_downstream_refuses_synthetic_tiles_from_evaluated_layouts(checkpoint, pipe, data, tmp_path):
    syn = tmp_path / "leaky"
    augment(AugmentConfig(str(checkpoint), str(data), str(syn), n=2, split="val", sampling=FAST), pipe=pipe,
            rank=0, world=1, progress=False)
    cfg = EvalConfig(checkpoint=str(checkpoint), data=str(data), out=str(tmp_path / "eval"), sampling=FAST,
                     sections=("downstream",), synthetic=str(syn), seeds=1,
                     segmenter_train=SegTrainConfig(steps=1, batch=1, crop=32))
    with pytest.raises(ValueError, match="evaluated sources"):
        evaluate(cfg, pipe=pipe)


def test_cli_wiring_and_section_checks(tmp_path):
    argv = ["evaluate", "--checkpoint", "c", "--data", "d", "--out", "o", "--sections", "fidelity,realism",
            "--steps", "5"]
    args = build_parser(argv).parse_args(argv)
    assert args.command == "evaluate" and args.steps == 5
    argv = ["augment", "--checkpoint", "c", "--data", "d", "--out", "o", "--n", "4"]
    args = build_parser(argv).parse_args(argv)
    assert args.n == 4
    with pytest.raises(ValueError, match="--synthetic"):
        EvalConfig(checkpoint="c", data="d", out="o", sections=("downstream",))
    with pytest.raises(ValueError, match="unknown sections"):
        EvalConfig(checkpoint="c", data="d", out="o", sections=("beauty",))


def test_bars_pass_only_on_measured_values_that_meet_their_targets():
    def realism(fid: float | None, naive: float | None) -> dict:
        return {"generated": {"fid": fid}, "naive_baseline": {"fid": naive}, "real_floor": {"fid": 100.0}}

    report = {"fidelity": {"yield": 0.95, "class_agreement": 0.89}, "consistency": {"pq_ratio": None},
              "realism": realism(260.0, 369.0), "speed": {"median_s": 10.5}}
    verdict = {name: row["pass"] for name, row in bars(report).items()}
    assert verdict == {"layout_yield": True, "layout_class": False, "consistency_pq_ratio": False,
                       "fid_below_naive": True, "speed_s": False}
    assert bars({"realism": realism(369.0, 369.0)})["fid_below_naive"]["pass"] is False  # equal is not below
    assert bars({"realism": realism(None, 369.0)})["fid_below_naive"]["pass"] is False
    assert bars({"speed": {"median_s": 10.0}})["speed_s"]["pass"] is True


def test_realism_runs_every_metric_on_the_same_inputs_and_refuses_a_repeated_key(tmp_path):
    tiles = [disc_sample(n=4, size=(32, 32), name=f"t{i}", source=f"s{i}", seed=i) for i in range(4)]
    real = RealData(tiles[0].classes, train=tiles[:2], split=tiles[2:], split_sources={"s2", "s3"})
    gens = [Generated(t, None, [], {}, t) for t in tiles[2:]]
    seen = []

    def count(inputs):
        seen.append(inputs)
        return {"count": {name: len(images) for name, images in inputs.sets.items()}}

    def reference(inputs):
        return {"reference_n": len(inputs.reference)}

    result = realism(gens, real, 0.5, seed=0, out=tmp_path, metrics=[count, reference])
    assert result == {"count": {"generated": 2, "naive_baseline": 2, "real_floor": 2}, "reference_n": 2}
    assert seen[0].gens is gens and seen[0].real is real
    with pytest.raises(ValueError, match="count repeats keys"):
        realism(gens, real, 0.5, seed=0, out=tmp_path, metrics=[count, count])


def test_markdown_renders_the_sections_a_report_holds_in_report_order():
    report = {"config": {"checkpoint": "c", "data": "d", "split": "val", "val_fraction": 0.15, "split_seed": 0,
                         "samples_per_layout": 1, "sampling": {"steps": 2, "guidance": 2.0, "sampler": "dpm++"}},
              "data": {"evaluated_tiles": 2, "mpp": 0.5}, "bars": {},
              "speed": {"median_s": 1.5, "runs": 1, "times_s": [1.5], "layout": "L", "canvas": "C", "steps": 2,
                        "guidance": 2.0, "threads": 1, "load_average_1min": 0.1},
              "consistency": {"real": {k: 0.5 for k in ("pq", "dq", "sq", "mpq_plus", "dice", "aji", "f1_d",
                                                        "f1_c_mean")},
                              "generated": {k: None for k in ("pq", "dq", "sq", "mpq_plus", "dice", "aji", "f1_d",
                                                              "f1_c_mean")}, "pq_ratio": None},
              "skipped": ["fidelity"], "figures": {}}
    md = to_markdown(report)
    assert md.index("## 2. Image-label consistency") < md.index("## 5. Speed")
    assert "## Bars" not in md and "## 1." not in md and "grid.png" not in md
    assert "PQ generated / real = **n/a**" in md and md.endswith("Sections not run: fidelity.\n")


def test_c2st_row_is_chance_for_copies_of_the_real_tiles_and_high_for_inverted_ones(tmp_path):
    from cosyn.evaluation.c2st import C2STConfig
    from cosyn.evaluation.evaluate.sections.realism import classifier_two_sample

    tiles = [disc_sample(n=4, size=(32, 32), name=f"t{i}", source=f"s{i % 4}", seed=i) for i in range(16)]
    real = RealData(tiles[0].classes, train=tiles[:8], split=tiles[8:], split_sources={"s0", "s1", "s2", "s3"})
    cfg = C2STConfig(crop=16, steps=20, batch=8, width=4, seeds=(0, 1))

    def c2st_of(transform):
        gens = [Generated(dataclasses.replace(t, image=transform(t.image)), None, [], {}, t) for t in tiles[8:]]
        return realism(gens, real, 0.5, seed=0, out=tmp_path, metrics=[classifier_two_sample], c2st_cfg=cfg)["c2st"]

    copies = c2st_of(lambda im: im.copy())
    # a generated crop equal to its real one scores the same: every pair ties, whatever the judge learned
    assert copies["generated"]["auc_mean"] == 0.5 and len(copies["generated"]["auc_per_seed"]) == 2
    assert list(copies["calibration"]) == ["real_vs_real", "blur_1px", "half_res_bicubic", "train_vs_val"]
    assert (copies["verdict"] is None) == (not copies["calibrated"])  # no verdict from an uncalibrated judge
    inverted = c2st_of(lambda im: 255 - im)
    assert inverted["generated"]["auc_mean"] > 0.9
    small = realism([Generated(t, None, [], {}, t) for t in tiles[8:]], real, 0.5, seed=0, out=tmp_path,
                    metrics=[classifier_two_sample], c2st_cfg=C2STConfig(crop=128))["c2st"]
    assert "smaller than the judge's 64² crops" in small["skipped"]  # 128 px at 0.25 µm/px is 64 px at 0.5
    with pytest.raises(ValueError, match="lr must be a finite"):
        C2STConfig(lr=float("nan"))
