"""The second stage as a plug-in: the protocol, the registry, the checkpoint's config.json naming it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiny import tiny_pipeline

from cosyn.core.layout import Layout, Point
from cosyn.core.resample import at_mpp
from cosyn.core.triple import Triple
from cosyn.model.checkpoint import CheckpointError
from cosyn.model.pipeline import CoSynPipeline
from cosyn.stages import STAGES, SecondStage, StageContext, StageError, load_stage
from cosyn.stages.upsampler import Upsampler

CONTEXT = StageContext(["background", "other", "inflammatory", "epithelial", "spindle"], 0.5, 5)


def _layout(mpp: float = 0.25) -> Layout:
    return Layout(64, 64, CONTEXT.classes, [Point(20, 20, "epithelial"), Point(44, 40, "inflammatory")], mpp,
                  "colon")


class Inverted:
    """A stage of the tests' own (files and all), to show that the pipeline runs any SecondStage."""

    name = "inverted"

    def __init__(self, sha256: str = "abc") -> None:
        self.sha256 = sha256

    def to_mpp(self, triple: Triple, mpp: float, seed: int) -> Triple:
        out = at_mpp(triple, mpp)
        out.image = 255 - out.image
        out.params["stages"] = [*triple.params["stages"], self.name]
        return out

    def save(self, folder: Path) -> dict:
        (folder / "weights.txt").write_text("none")
        return {"name": self.name, "strength": 1}


seen: dict = {}


def load_inverted(folder: Path, spec: dict, context: StageContext) -> Inverted:
    """The registry's loader signature."""
    seen.update(folder=folder, spec=spec, context=context)
    return Inverted()


def test_the_upsampler_is_the_default_and_a_second_stage():
    assert isinstance(Upsampler(), SecondStage) and isinstance(Inverted(), SecondStage)
    assert isinstance(load_stage(Path("nowhere"), None, CONTEXT), Upsampler)
    assert isinstance(load_stage(Path("nowhere"), {"name": "upsampler"}, CONTEXT), Upsampler)
    assert set(STAGES) >= {"upsampler", "texture"}


def test_an_unknown_or_unimportable_stage_is_refused_naming_config_json(monkeypatch, tmp_path):
    with pytest.raises(StageError, match=r"config\.json: second_stage .* names no known stage"):
        load_stage(tmp_path, {"name": "bogus"}, CONTEXT)
    with pytest.raises(StageError, match=r"config\.json: second_stage .* names no known stage"):
        load_stage(tmp_path, ["upsampler"], CONTEXT)
    monkeypatch.setitem(STAGES, "missing", "cosyn.stages.no_such_module:load")
    with pytest.raises(StageError, match=r"config\.json: second_stage 'missing' cannot be loaded"):
        load_stage(tmp_path, {"name": "missing"}, CONTEXT)


def test_the_pipeline_runs_whichever_stage_it_holds():
    pipe = tiny_pipeline()
    base = pipe.sample(_layout(), steps=1, seed=2, refine=False)[0]
    pipe.second_stage = Inverted()
    out = pipe.sample(_layout(), steps=1, seed=2)[0]
    assert out.params["stages"] == ["base", "inverted"] and out.params["second_stage_sha256"] == "abc"
    assert out.image.shape == (64, 64, 3) and out.layout.mpp == 0.25
    assert np.array_equal(out.image, 255 - at_mpp(base, 0.25).image)


def test_a_checkpoint_names_its_stage_and_keeps_its_files(tmp_path, monkeypatch):
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path / "plain")
    config = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert config["second_stage"] == {"name": "upsampler"} and not (tmp_path / "plain" / "second_stage").exists()
    assert isinstance(CoSynPipeline.from_pretrained(tmp_path / "plain").second_stage, Upsampler)

    pipe.second_stage = Inverted()
    pipe.save_pretrained(tmp_path / "own")
    assert (tmp_path / "own" / "second_stage" / "weights.txt").read_text() == "none"
    assert json.loads((tmp_path / "own" / "config.json").read_text())["second_stage"] == {"name": "inverted",
                                                                                          "strength": 1}
    monkeypatch.setitem(STAGES, "inverted", f"{__name__}:load_inverted")  # one line registers a stage
    seen.clear()
    loaded = CoSynPipeline.from_pretrained(tmp_path / "own")
    assert isinstance(loaded.second_stage, Inverted)
    assert seen["folder"] == tmp_path / "own" / "second_stage" and seen["spec"]["strength"] == 1
    assert seen["context"] == StageContext(list(pipe.config.classes), 0.5, 5)


def test_a_checkpoint_without_the_key_gets_the_upsampler_and_one_naming_a_bad_stage_is_refused(tmp_path):
    tiny_pipeline().save_pretrained(tmp_path / "ck")
    config_path = tmp_path / "ck" / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("second_stage")
    config_path.write_text(json.dumps(config))
    assert isinstance(CoSynPipeline.from_pretrained(tmp_path / "ck").second_stage, Upsampler)
    config_path.write_text(json.dumps({**config, "second_stage": {"name": "bogus"}}))
    with pytest.raises(CheckpointError, match=r"ck/config\.json: second_stage .* names no known stage"):
        CoSynPipeline.from_pretrained(tmp_path / "ck")


def test_a_checkpoint_holding_the_removed_learned_refiner_is_refused_by_folder(tmp_path):
    tiny_pipeline().save_pretrained(tmp_path / "ck")
    (tmp_path / "ck" / "refiner").mkdir()
    with pytest.raises(CheckpointError, match=r"ck/refiner: this checkpoint holds a learned refiner"):
        CoSynPipeline.from_pretrained(tmp_path / "ck")
