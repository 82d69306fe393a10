"""The refiner stage: identity before training, exact resume, persistence, aligned training pairs."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from conftest import disc_sample

from cosyn.core.classes import CONSEP
from cosyn.core.resize import area_resize
from cosyn.model.pipeline import CheckpointError, CoSynPipeline
from cosyn.refiner.data import Degradation, crop_pair, refiner_tile
from cosyn.refiner.network import RefinerConfig, RefinerNet
from cosyn.refiner.stage import Refiner, RefinerError, save_refiner
from cosyn.refiner.training import RefinerTrainConfig, train_refiner

TINY = {"widths": (8, 16), "blocks": 1}


def base_triple(seed: int = 0):
    s = disc_sample(n=4, size=(32, 32), radius=4, seed=seed)
    return s.image, (s.inst_map > 0).astype(np.float32), s.class_map, s


def test_an_untrained_refiner_is_bicubic_upsampling():
    ref = Refiner(RefinerNet(RefinerConfig(**TINY)), ["background", "a", "b", "c", "d"], 0.5)
    image, dist, cls, _ = base_triple()
    out = ref.refine(image, dist, cls, np.zeros((64, 64), np.uint8))
    bicubic = torch.nn.functional.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1,
                                              size=(64, 64), mode="bicubic", align_corners=False)
    expected = ((bicubic.clamp(-1, 1) + 1) * 127.5 + 0.5).byte()[0].permute(1, 2, 0).numpy()
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("formulation", ["gan", "diffusion"])
def test_saved_refiner_loads_and_refines_the_same(tmp_path, formulation):
    torch.manual_seed(0)
    net = RefinerNet(RefinerConfig(formulation=formulation, **TINY))
    for p in net.parameters():  # leave the identity so that a lost weight would show
        p.data.normal_(0, 0.05)
    ref = Refiner(net, ["background", "a", "b", "c", "d"], 0.5)
    save_refiner(ref, tmp_path / "refiner")
    loaded = Refiner.from_pretrained(tmp_path / "refiner")
    image, dist, cls, s = base_triple()
    pts = np.zeros((64, 64), np.uint8)
    pts[10, 12], pts[40, 30] = 1, 3
    a, b = ref.refine(image, dist, cls, pts, seed=3), loaded.refine(image, dist, cls, pts, seed=3)
    assert np.array_equal(a, b)
    assert loaded.output_mpp == 0.25
    assert not np.array_equal(a, ref.refine(image, dist, cls, pts, seed=4))  # the noise input matters


def test_refiner_folder_errors_name_the_file(tmp_path):
    with pytest.raises(RefinerError, match="config.json: missing"):
        Refiner.from_pretrained(tmp_path)
    save_refiner(Refiner(RefinerNet(RefinerConfig(**TINY)), ["background", "a"] + ["c"] * 3, 0.5), tmp_path / "r")
    (tmp_path / "r" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(RefinerError, match="model.safetensors"):
        Refiner.from_pretrained(tmp_path / "r")
    (tmp_path / "r" / "config.json").write_text(json.dumps({"refiner": {"formulation": "vae"}}))
    with pytest.raises(RefinerError, match="invalid refiner config"):
        Refiner.from_pretrained(tmp_path / "r")


def test_training_pairs_are_aligned_and_degradation_only_touches_the_input():
    tile = refiner_tile(disc_sample(n=9, size=(64, 64), radius=5), base_mpp=0.5, scale=2)
    assert tile.image_hi.shape[:2] == (64, 64) and tile.image_lo.shape[:2] == (32, 32)
    assert np.count_nonzero(tile.points_hi) == 9
    pair = crop_pair(tile, 32, 2, np.random.default_rng(5), None)
    # the low-resolution input is the area-downsampled target, up to rounding
    down = area_resize(pair["image_hi"], 16, 16).astype(int)
    assert np.abs(down - pair["image_lo"].astype(int)).max() <= 1
    degraded = crop_pair(tile, 32, 2, np.random.default_rng(5), Degradation())
    assert np.array_equal(degraded["image_hi"], pair["image_hi"])
    assert not np.array_equal(degraded["image_lo"], pair["image_lo"])


def test_a_minimum_blur_never_shows_the_refiner_a_sharp_input():
    rng = np.random.default_rng(0)
    sharp = (rng.random((48, 48, 3)) * 255).astype(np.uint8)
    edges = [cv2.Laplacian(Degradation(blur_sigma=2.0, blur_min=b, noise=0, gain=0, offset=0)
                           .apply(sharp, np.random.default_rng(s)).astype(np.float32), cv2.CV_32F).var()
             for b in (0.0, 1.5) for s in range(20)]
    unblurred, blurred = edges[:20], edges[20:]
    # sigma drawn from [0, 2] sometimes leaves the input nearly sharp; from [1.5, 2] it never does
    assert max(blurred) < 0.5 * max(unblurred)
    assert max(blurred) < 0.02 * cv2.Laplacian(sharp.astype(np.float32), cv2.CV_32F).var()


@pytest.mark.parametrize("formulation", ["gan", "diffusion"])
def test_refiner_training_resumes_exactly(data, tmp_path, formulation):
    common = {"data": str(data), "formulation": formulation, "batch": 2, "crop": 32, "widths": (8, 16),
              "save_every": 2, "val_fraction": 0.15}
    train_refiner(RefinerTrainConfig(out=str(tmp_path / "straight"), steps=4, **common))
    # interrupted after 2 of 4 steps, then resumed
    train_refiner(RefinerTrainConfig(out=str(tmp_path / "split"), steps=4, stop_after=2, **common))
    train_refiner(RefinerTrainConfig(out=str(tmp_path / "split"), steps=4, **common))
    a = Refiner.from_pretrained(tmp_path / "straight" / "refiner").net.state_dict()
    b = Refiner.from_pretrained(tmp_path / "split" / "refiner").net.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    initial = RefinerNet(RefinerConfig(formulation=formulation, widths=(8, 16))).state_dict()
    assert not torch.equal(a["out.weight"], initial["out.weight"])  # it learned something


def test_refiner_training_refuses_non_finite_numbers(tmp_path):
    with pytest.raises(ValueError, match="lr=inf"):
        RefinerTrainConfig(data="x", out=str(tmp_path), lr=float("inf"))


def _with_refiner(tmp_path, seed: int = 0):
    from tiny import text_encoder, tiny_pipeline

    pipe = tiny_pipeline()
    torch.manual_seed(seed)
    net = RefinerNet(RefinerConfig(**TINY))
    for p in net.parameters():
        p.data.normal_(0, 0.05)
    pipe.refiner = Refiner(net, list(pipe.config.classes), pipe.config.mpp)
    pipe.save_pretrained(tmp_path / "ckpt")
    return CoSynPipeline.from_pretrained(tmp_path / "ckpt", text_encoder=text_encoder())


def _layout(mpp):
    from cosyn.core.layout import Layout, Point

    return Layout(64, 64, ["background", "other", "inflammatory", "epithelial", "spindle"],
                  [Point(20, 20, "epithelial"), Point(44, 40, "inflammatory")], mpp=mpp, tissue="colon")


def test_pipeline_refines_a_finer_layout_to_its_mpp_and_records_both_stages(tmp_path):
    pipe = _with_refiner(tmp_path)
    assert (tmp_path / "ckpt" / "refiner" / "model.safetensors").is_file()
    assert Refiner.from_pretrained(tmp_path / "ckpt" / "refiner").output_mpp == 0.25  # loadable alone
    refined = pipe.sample(_layout(0.25), steps=2, seed=1)[0]
    base = pipe.sample(_layout(0.25), steps=2, seed=1, refine=False)[0]
    assert refined.image.shape == (64, 64, 3) and refined.layout.mpp == 0.25
    assert base.image.shape == (32, 32, 3) and base.layout.mpp == 0.5
    assert refined.params["stages"] == ["base", "refiner"] and base.params["stages"] == ["base"]
    assert refined.params["refiner_sha256"] == pipe.refiner.sha256 != ""
    assert refined.class_map.shape == refined.inst_map.shape == refined.dist_map.shape == (64, 64)
    # the refiner changes the look, not the labels: they are the base ones, upsampled
    assert np.mean((refined.class_map[::2, ::2] > 0) == (base.class_map > 0)) > 0.9
    # a layout drawn at the base model's resolution is not refined
    assert pipe.sample(_layout(0.5), steps=2)[0].params["stages"] == ["base"]


def test_pipeline_refuses_a_refiner_for_another_base_model(tmp_path):
    pipe = _with_refiner(tmp_path)
    save_refiner(Refiner(pipe.refiner.net, list(pipe.config.classes), 0.25), tmp_path / "ckpt" / "refiner")
    with pytest.raises(CheckpointError, match="refiner follows a base model"):
        CoSynPipeline.from_pretrained(tmp_path / "ckpt")


def test_cli_trains_resumes_and_installs_a_refiner_into_a_checkpoint(checkpoint, data, tmp_path):
    import shutil

    from cosyn.cli import main

    ckpt = tmp_path / "ckpt"
    shutil.copytree(checkpoint, ckpt)
    (tmp_path / "c.json").write_text(json.dumps({"widths": [8, 16], "batch": 2, "crop": 32, "save_every": 1}))
    args = ["train-refiner", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(tmp_path / "run"),
            "--config", str(tmp_path / "c.json"), "--threads", "1"]
    assert main([*args, "--steps", "1"]) == 0
    assert not (ckpt / "refiner").exists()
    assert main([*args, "--steps", "2", "--install"]) == 0  # resumes at step 1
    state = json.loads((tmp_path / "run" / "state" / "train.json").read_text())
    assert '"step"' in json.dumps(state)
    installed = Refiner.from_pretrained(ckpt / "refiner")
    trained = Refiner.from_pretrained(tmp_path / "run" / "refiner")
    assert installed.sha256 == trained.sha256 and installed.output_mpp == 0.25
    assert CoSynPipeline.from_pretrained(ckpt).refiner is not None


def test_cli_refuses_non_finite_refiner_options(checkpoint, data, tmp_path, capsys):
    from cosyn.cli import main

    (tmp_path / "c.json").write_text('{"lr": Infinity}')
    code = main(["train-refiner", "--checkpoint", str(checkpoint), "--data", str(data), "--out",
                 str(tmp_path / "run"), "--config", str(tmp_path / "c.json")])
    assert code == 2 and "lr=inf must be a finite number" in capsys.readouterr().err


def test_a_damaged_refiner_file_is_refused(tmp_path):
    save_refiner(Refiner(RefinerNet(RefinerConfig(widths=(8, 16))), list(CONSEP.names), 0.5), tmp_path / "r")
    weights = tmp_path / "r" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(RefinerError, match="differs .* damaged or was replaced"):
        Refiner.from_pretrained(tmp_path / "r")


def test_the_unsharp_mask_sharpens_without_shifting_the_colour():
    from cosyn.evaluation.texture import laplacian_variance
    from cosyn.refiner.stage import unsharp_mask

    tile = disc_sample(n=9, size=(64, 64), radius=5).image
    soft = cv2.GaussianBlur(tile, (0, 0), 1.5)
    sharp = unsharp_mask(soft, 1.0, 0.5)
    assert laplacian_variance(sharp) > 1.2 * laplacian_variance(soft)
    assert np.abs(sharp.astype(float).mean((0, 1)) - soft.astype(float).mean((0, 1))).max() < 1.0
    assert np.array_equal(unsharp_mask(soft, 1.0, 0.0), soft)


def test_a_highpass_residual_adds_detail_but_cannot_move_colour_or_layout():
    from cosyn.refiner.network import gaussian_blur

    torch.manual_seed(0)
    net = RefinerNet(RefinerConfig(widths=(8, 16), residual_highpass=2.0))
    torch.nn.init.normal_(net.out.weight, std=0.5)  # a trained refiner's output, not the untrained zero
    torch.nn.init.normal_(net.out.bias, std=0.5)
    with torch.no_grad():
        residual = net(torch.randn(2, net.cfg.in_channels, 64, 64))
    assert residual.std() > 0.01
    assert residual.mean((2, 3)).abs().max() < 0.05 * residual.std()  # no colour shift
    coarse = gaussian_blur(residual, 6.0)[..., 16:48, 16:48]  # what varies over 6 px and more, away from borders
    assert coarse.std() < 0.15 * residual.std()
    with pytest.raises(ValueError, match="only the gan formulation"):
        RefinerConfig(formulation="diffusion", residual_highpass=2.0)


def test_the_upsampler_at_scale_one_changes_no_pixel():
    from cosyn.data.targets import triple_from_sample
    from cosyn.refiner.stage import Upsampler

    base = triple_from_sample(disc_sample(n=9, size=(64, 64), radius=5))
    same = Upsampler(len(CONSEP.names), scale=1).refine_triple(base)
    assert np.array_equal(same.image, base.image) and np.array_equal(same.class_map, base.class_map)
    assert same.params["stages"] == ["base", "upsampler"] and same.layout.mpp == base.layout.mpp
