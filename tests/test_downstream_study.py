"""benchmarks/downstream_study.py's bookkeeping: paired differences, accumulation, resume, budget check."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from cosyn.evaluation.evaluate.sections.downstream import paired_summary, summary_markdown
from cosyn.io.fileio import file_sha256

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "downstream_study.py"
CLASSES = ("other", "inflammatory", "epithelial", "spindle")


def _study():
    spec = importlib.util.spec_from_file_location("downstream_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _scores(pq: float) -> dict:
    return {"dice": 0.8, "aji": pq + 0.1, "pq": pq, "mpq_plus": pq / 2, "f1_d": 0.7, "f1_c_mean": 0.5,
            "pq_per_class": {c: pq / (i + 1) for i, c in enumerate(CLASSES)}}


def test_paired_summary_pairs_seeds_and_reports_ratios():
    runs = {"real": {0: _scores(0.50), 1: _scores(0.40), 2: _scores(0.45)},
            "real+synthetic": {0: _scores(0.52), 1: _scores(0.39)},
            "synthetic": {1: _scores(0.20)}}
    s = paired_summary(runs)
    assert s["arms"]["real"]["pq"]["mean"] == pytest.approx(0.45) and s["arms"]["real"]["seeds"] == [0, 1, 2]
    aug = s["paired"]["real+synthetic"]
    assert aug["seeds"] == [0, 1]  # seed 2 has no partner
    assert aug["pq"]["diffs"] == pytest.approx([0.02, -0.01]) and aug["pq"]["min"] == pytest.approx(-0.01)
    assert aug["pq_spindle"]["diffs"] == pytest.approx([0.005, -0.0025])
    assert s["paired"]["synthetic"]["pq"]["ratio"] == pytest.approx(0.5)  # against real seed 1 alone
    assert "real" not in s["paired"]


def test_summary_markdown_shows_arms_per_seed_differences_ratios_and_controls():
    runs = {"real": {0: _scores(0.40), 1: _scores(0.30)}, "real+synthetic": {0: _scores(0.42), 1: _scores(0.29)},
            "synthetic": {0: _scores(0.20), 1: _scores(0.15)}}
    known_bad = {"of": "real|none|seed0", "untrained": _scores(0.003)}
    lines = summary_markdown(paired_summary(runs), known_bad)
    assert lines[0] == ("| arm | seeds | PQ | mPQ+ | AJI | PQ other | PQ inflammatory | PQ epithelial "
                        "| PQ spindle |")
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in lines[2:]}
    assert rows["real"][:2] == ["0, 1", "0.350 ± 0.050"]
    assert rows["real+synthetic − real, per seed (mean)"][1] == "+0.020, -0.010 (+0.005)"
    assert rows["synthetic / real"][1] == "0.50×"  # the train-on-synthetic ratio of mean PQ
    assert rows["control: untrained"][:2] == ["–", "0.003"]
    assert len(rows) == 3 + 2 * 2 + 1  # the controls' "of" is not a row
    assert summary_markdown(paired_summary({}), known_bad) == []


def test_study_accumulates_resumes_and_refuses_another_budget(data, tmp_path, capsys):
    study = _study()
    results = tmp_path / "study.json"
    where = ["--data", str(data), "--work", str(tmp_path / "work"), "--results", str(results), "--arm", "real"]
    common = [*where, "--steps", "2", "--batch", "2", "--crop", "32", "--backbone", "resnet10"]
    assert study.main([*common, "--seed", "0", "--controls"]) == 0
    first = json.loads(results.read_text())
    run = first["runs"]["real|none|seed0"]
    assert run["checkpoint_sha256"] == file_sha256(Path(run["checkpoint"]) / "segmenter.safetensors")
    assert run["second_stage"] == run["synthetic_set"] == "none" and set(run["scores"]["pq_per_class"]) == set(CLASSES)
    assert first["controls"]["of"] == "real|none|seed0" and "untrained" in first["controls"]

    assert study.main([*common, "--seed", "0", "--seed", "1"]) == 0
    assert "real|none|seed0: done before, skipped" in capsys.readouterr().out
    second = json.loads(results.read_text())
    assert second["runs"]["real|none|seed0"] == run and "real|none|seed1" in second["runs"]
    assert second["summary"]["none"]["arms"]["real"]["seeds"] == [0, 1]

    # a folder without meta/ stands in for `cosyn augment` output: its second stage is "unknown"; the hash of
    # its generation.json names the set, so a set remade with other settings never reuses these runs
    syn_folder = tmp_path / "syn"
    shutil.copytree(data, syn_folder)
    (syn_folder / "generation.json").write_text('{"second_stage": {"name": "texture"}}')
    label = f"unknown:8 tiles:{file_sha256(syn_folder / 'generation.json')[:8]}"
    syn_args = ["--arm", "synthetic", "--synthetic", str(syn_folder)]
    assert study.main([*common[:-8], *syn_args, *common[-8:], "--seed", "0"]) == 0
    third = json.loads(results.read_text())
    syn = third["runs"][f"synthetic|{label}|seed0"]
    assert syn["synthetic"]["tiles"] == 8 and syn["train_tiles"] == 8
    paired = third["summary"][label]["paired"]["synthetic"]
    assert paired["seeds"] == [0] and paired["pq"]["diffs"] == [syn["scores"]["pq"] - run["scores"]["pq"]]

    with pytest.raises(SystemExit, match="made with budget"):
        study.main([*where, "--steps", "3", "--batch", "2", "--crop", "32", "--backbone", "resnet10", "--seed", "2"])
