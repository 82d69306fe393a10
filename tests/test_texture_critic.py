"""The texture stage's critic: it learns a defect, the stage keeps the draw it finds most real, it is saved and
checked like the bank, and `cosyn train-critic` fits one for a checkpoint from its training data."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_texture_stage import CLASSES, POINTS, base_triple, synthetic_tile

from cosyn.core.resample import resample_instances
from cosyn.evaluation.c2st import roc_auc
from cosyn.stages.base import StageContext, StageError
from cosyn.stages.texture import BankError, TextureBank, TextureSettings, TextureStage, load, load_bank, save_bank
from cosyn.stages.texture.critic import CRITIC_NAME, Critic, load_critic, save_critic, train_critic
from cosyn.stages.texture.paste import targets_from_base


def blurred(image: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), 1.5)


@pytest.fixture(scope="module")
def bank_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(1)
    path = tmp_path_factory.mktemp("bank") / "texture_bank.safetensors"
    save_bank(TextureBank([synthetic_tile(rng, f"t{i}", f"slide{i % 2}") for i in range(6)], 0.25, CLASSES,
                          "synthetic test tiles"), path)
    return path


@pytest.fixture(scope="module")
def critic() -> Critic:
    """A critic that has learnt to see blur: sharp synthetic tissue is real, the same blurred is generated."""
    rng = np.random.default_rng(2)
    sharp = [synthetic_tile(rng, f"r{i}", "s").image for i in range(8)]
    return train_critic(sharp, [blurred(im) for im in sharp], models=1, steps=120)


def test_the_critic_sees_the_defect_it_was_trained_on(critic: Critic) -> None:
    rng = np.random.default_rng(3)
    unseen = [synthetic_tile(rng, f"u{i}", "s").image for i in range(6)]
    scores = [critic.score(im) for im in unseen] + [critic.score(blurred(im)) for im in unseen]
    assert roc_auc(np.r_[np.zeros(6), np.ones(6)] > 0.5, np.array(scores)) > 0.9
    with pytest.raises(ValueError, match="at least 64"):
        critic.score(unseen[0][:32, :32])


def test_the_stage_keeps_the_draw_the_critic_finds_most_real(bank_path: Path, critic: Critic) -> None:
    bank = load_bank(bank_path)
    plain = TextureStage(bank)
    choosing = TextureStage(bank, TextureSettings(draws=3), critic=critic)
    base = base_triple(POINTS)
    out = choosing.to_mpp(base, 0.25, seed=5)
    scores, best = out.params["critic_scores"], out.params["chosen_draw"]
    assert out.params["draws"] == 3 and len(scores) == 3 and best == int(np.argmin(scores))
    # draw d is the composition from the generator seeded (seed, d); draw 0 is what the stage makes without a critic
    draws = [plain.to_mpp(base, 0.25, seed=5).image]
    for d in (1, 2):
        rng = np.random.default_rng([5, d])
        h, w = out.inst_map.shape
        layout = base.layout.rescaled(w, h, 0.25)
        draws.append(plain.compose(base.image, resample_instances(base.inst_map, h, w), layout.xy(),
                                   layout.class_ids(), rng)[0])
    np.testing.assert_array_equal(out.image, draws[best])
    assert [round(critic.score(im), 4) for im in draws] == scores
    assert out.params["missed_centroids"] == 0


def test_draws_need_a_critic(bank_path: Path, tmp_path: Path) -> None:
    with pytest.raises(StageError, match="critic"):
        TextureStage(load_bank(bank_path), TextureSettings(draws=2))
    for bad in (0, 17, 2.5):
        with pytest.raises(ValueError, match="draws"):
            TextureSettings(draws=bad)
    spec = TextureStage(load_bank(bank_path), bank_path=bank_path).save(tmp_path / "second_stage")
    with pytest.raises(BankError, match="config.json: draws 4 needs a critic"):
        load(tmp_path / "second_stage", {**spec, "settings": {**spec["settings"], "draws": 4}},
             StageContext(CLASSES, 0.5, len(CLASSES)))


def test_a_saved_critic_loads_checked_and_scores_the_same(bank_path: Path, critic: Critic, tmp_path: Path) -> None:
    stage = TextureStage(load_bank(bank_path), TextureSettings(draws=2), bank_path=bank_path, critic=critic)
    folder = tmp_path / "second_stage"
    spec = stage.save(folder)
    assert spec["settings"]["draws"] == 2 and CRITIC_NAME in json.loads((folder / "checksums.json").read_text())
    loaded = load(folder, spec, StageContext(CLASSES, 0.5, len(CLASSES)))
    image = synthetic_tile(np.random.default_rng(4), "x", "s").image
    assert loaded.critic.score(image) == pytest.approx(critic.score(image), abs=1e-5)
    out = loaded.to_mpp(base_triple(POINTS), 0.25, seed=1)
    assert out.params["critic_sha256"] == json.loads((folder / "checksums.json").read_text())[CRITIC_NAME]
    # a changed critic file is refused, naming it; a critic holding NaN is refused, naming the tensor
    save_critic(Critic([replace_weights(critic.models[0], 0.5)]), folder / CRITIC_NAME, "changed")
    with pytest.raises(BankError, match=CRITIC_NAME):
        load(folder, spec, StageContext(CLASSES, 0.5, len(CLASSES), trust_unverified=True))
    save_critic(Critic([replace_weights(critic.models[0], float("nan"))]), tmp_path / "nan.safetensors", "bad")
    with pytest.raises(StageError, match="nan.safetensors: model 0's .* NaN"):
        load_critic(tmp_path / "nan.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a critic")
    with pytest.raises(StageError, match="junk.safetensors: not a readable critic"):
        load_critic(tmp_path / "junk.safetensors")


def replace_weights(model: torch.nn.Module, value: float) -> torch.nn.Module:
    """A copy of `model` whose first conv weight is `value` everywhere."""
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.features[0][0].weight.fill_(value)
    return changed


def test_size_to_bank_moves_each_class_to_the_bank_sizes_and_keeps_their_order(bank_path: Path) -> None:
    nuclei = load_bank(bank_path).catalogue()
    inst = np.zeros((96, 96), np.int32)
    points = np.array([[20, 20], [60, 20], [20, 60], [60, 60]], float)
    for k, ((x, y), r) in enumerate(zip(points, (2, 3, 2, 4), strict=True), start=1):
        cv2.circle(inst, (int(x), int(y)), r, k, -1)
    classes = np.array([3, 3, 4, 4])
    kept = targets_from_base(points, classes, inst, nuclei)
    moved = targets_from_base(points, classes, inst, nuclei, size_to_bank=1.0)
    for c in (3, 4):
        before = [t.log_area for t in kept if t.cls == c]
        after = [t.log_area for t in moved if t.cls == c]
        assert np.median(after) == pytest.approx(np.median(nuclei.log_area[nuclei.cls == c]), abs=1e-5)
        assert np.argsort(after).tolist() == np.argsort(before).tolist()  # the base still says which is larger
        assert np.diff(after) == pytest.approx(np.diff(before))


def test_cli_train_critic_fits_one_and_sampling_uses_it(bank_path: Path, data: Path, tmp_path: Path) -> None:
    from tiny import tiny_pipeline

    pipe = tiny_pipeline()
    pipe.second_stage = TextureStage(load_bank(bank_path), bank_path=bank_path)
    folder = tmp_path / "ck"
    pipe.save_pretrained(folder)
    cli = [sys.executable, "-m", "cosyn"]
    run = subprocess.run([*cli, "train-critic", "--checkpoint", str(folder), "--data", str(data), "--tiles", "2",
                          "--sampling-steps", "1", "--critic-steps", "2", "--draws", "3"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert json.loads((folder / "config.json").read_text())["second_stage"]["settings"]["draws"] == 3
    assert CRITIC_NAME in json.loads((folder / "second_stage" / "checksums.json").read_text())
    layout = tmp_path / "layout.json"
    layout.write_text(json.dumps({"width": 64, "height": 64, "mpp": 0.25, "classes": CLASSES,
                                  "points": [{"x": 20, "y": 20, "cls": "epithelial"}]}))
    out = tmp_path / "bundles"
    run = subprocess.run([*cli, "sample", "--checkpoint", str(folder), "--layout", str(layout), "--steps", "1",
                          "--out", str(out), "--formats", "png"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    params = json.loads(next(out.rglob("params.json")).read_text())
    assert params["draws"] == 3 and len(params["critic_scores"]) == 3
    upsampler = tmp_path / "up"
    tiny_pipeline().save_pretrained(upsampler)
    run = subprocess.run([*cli, "train-critic", "--checkpoint", str(upsampler), "--data", str(data)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 2 and "its second stage is 'upsampler'" in run.stderr
    for bad in (["--draws", "1"], ["--draws", "17"], ["--tiles", "1"]):
        run = subprocess.run([*cli, "train-critic", "--checkpoint", str(folder), "--data", str(data), *bad],
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 2 and "draws must lie in 2..16, tiles be at least 2" in run.stderr
