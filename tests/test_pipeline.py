"""Pipeline: shapes, determinism, batching, persistence, previews/cancel, bad input."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny import text_encoder, tiny_pipeline

from cosyn.core.layout import Layout, LayoutError, Point
from cosyn.model.pipeline import CheckpointError, CoSynPipeline, SamplingCancelled, read_pipeline_config
from cosyn.model.settings import SamplingSettings


@pytest.fixture(scope="module")
def pipe() -> CoSynPipeline:
    return tiny_pipeline()


def _layout(**kw) -> Layout:
    base = {"width": 64, "height": 64, "classes": ["background", "other", "inflammatory", "epithelial", "spindle"],
            "points": [Point(10, 12, "epithelial"), Point(40, 30, "spindle"), Point(50, 50, "inflammatory")],
            "mpp": 0.5, "tissue": "colon"}
    base.update(kw)
    return Layout(**base)


@pytest.mark.parametrize("sampler", ["ddim", "dpm++", "unipc"])
def test_sample_shapes_and_types(pipe, sampler):
    triples = pipe.sample(_layout(), steps=3, sampler=sampler, n=2, seed=3)
    assert len(triples) == 2
    for tr in triples:
        assert tr.image.shape == (64, 64, 3) and tr.image.dtype == np.uint8
        assert tr.class_map.shape == (64, 64) and tr.class_map.max() < 5
        assert tr.inst_map.dtype == np.int32
        assert tr.dist_map.dtype == np.float32 and 0 <= tr.dist_map.min() <= tr.dist_map.max() <= 1
        assert tr.params["sampler"] == sampler and tr.params["centroids"] == 3
    # the two batch members get different noise
    assert not np.array_equal(triples[0].image, triples[1].image)


def test_deterministic_for_fixed_seed(pipe):
    a = pipe.sample(_layout(), steps=3, seed=7)[0]
    b = pipe.sample(_layout(), steps=3, seed=7)[0]
    c = pipe.sample(_layout(), steps=3, seed=8)[0]
    assert np.array_equal(a.image, b.image) and np.array_equal(a.class_map, b.class_map)
    assert not np.array_equal(a.image, c.image)


def test_save_load_gives_identical_samples(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "ck")
    loaded = CoSynPipeline.from_pretrained(tmp_path / "ck", text_encoder=text_encoder())
    a = pipe.sample(_layout(), steps=3, seed=1)[0]
    b = loaded.sample(_layout(), steps=3, seed=1)[0]
    assert np.array_equal(a.image, b.image) and np.array_equal(a.inst_map, b.inst_map)
    assert len(loaded.sha256) == 64


def test_on_step_previews_and_cancel(pipe):
    seen = []
    pipe.sample(_layout(), steps=4, on_step=lambda p: seen.append((p.step, p.image.shape, p.class_map.shape)))
    assert [s[0] for s in seen] == [1, 2, 3, 4]
    assert seen[0][1] == (64, 64, 3) and seen[0][2] == (64, 64)
    with pytest.raises(SamplingCancelled, match="step 2 of 4"):
        pipe.sample(_layout(), steps=4, on_step=lambda p: p.step < 2)


def test_layout_at_other_mpp_is_resampled_to_model_mpp(pipe):
    native = _layout(width=128, height=128, mpp=0.25,
                     points=[Point(20, 24, "epithelial"), Point(100, 60, "spindle")])
    tr = pipe.sample(native, steps=2, refine=False)[0]
    assert tr.image.shape == (64, 64, 3)
    assert tr.layout.mpp == 0.5
    assert np.allclose(tr.layout.xy(), [[9.75, 11.75], [49.75, 29.75]])  # scaled about pixel centres
    assert tr.params["layout_mpp"] == 0.25 and tr.params["model_mpp"] == 0.5


def test_the_default_second_stage_upsamples_the_triple_to_the_layouts_mpp(pipe):
    native = _layout(width=128, height=128, mpp=0.25,
                     points=[Point(20, 24, "epithelial"), Point(100, 60, "spindle")])
    base = pipe.sample(native, steps=2, seed=4, refine=False)[0]
    up = pipe.sample(native, steps=2, seed=4)[0]
    assert pipe.second_stage.name == "upsampler" and pipe.output_mpp(native) == 0.25
    assert up.image.shape == (128, 128, 3) and up.layout.mpp == 0.25 and up.params["stages"] == ["base", "upsampler"]
    assert np.allclose(up.layout.xy(), native.xy())
    # the same base triple, enlarged: the image bicubic then sharpened, the labels following the base's
    x = torch.from_numpy(base.image).permute(2, 0, 1)[None].float()
    bicubic = F.interpolate(x, scale_factor=2, mode="bicubic").clamp(0, 255).round()[0].permute(1, 2, 0).numpy()
    blur = cv2.GaussianBlur(bicubic.astype(np.float32), (0, 0), 1.0)
    sharpened = np.clip(bicubic + 0.5 * (bicubic - blur), 0, 255).round()
    diff = np.abs(up.image - sharpened)  # an independent torch bicubic: the same but for rounding
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    assert (up.class_map[::2, ::2] == base.class_map).mean() > 0.9
    assert set(up.inst_classes.values()) <= set(base.inst_classes.values()) | {0}


def test_canvas_rounds_to_stride(pipe):
    tr = pipe.sample(_layout(width=67, height=61), steps=2)[0]
    assert pipe.config.denoiser.stride == 2 and tr.image.shape[:2] == (60, 68)  # 61x67 to the nearest even


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"points": [Point(10, 10, "mitotic")]}, "unknown class 'mitotic'"),
        ({"points": [Point(70, 10, "epithelial")]}, "outside the 64x64 canvas"),
        ({"width": 100000}, "outside the allowed"),
        ({"points": [Point(1, 1, "other")] * 20001}, "exceed the limit"),
    ],
)
def test_bad_layouts_are_clear_errors(kw, message):
    with pytest.raises(LayoutError, match=message):
        _layout(**kw)


def test_canvas_over_model_limit(pipe):
    with pytest.raises(LayoutError, match="exceeds the limit"):
        pipe.sample(_layout(width=2048, height=2048, mpp=0.5, points=[]), steps=1)


def test_bad_settings_are_refused_before_sampling(pipe):
    with pytest.raises(ValueError, match="unknown sampler"):
        pipe.sample(_layout(), sampler="heun9")
    with pytest.raises(ValueError, match="steps"):
        pipe.sample(_layout(), steps=0)
    # NaN guidance used to pass through and come out as a black image
    with pytest.raises(ValueError, match="guidance=nan must be a finite number"):
        pipe.sample(_layout(), SamplingSettings(steps=2), guidance=float("nan"))


def test_settings_and_keyword_fields_sample_the_same(pipe):
    a = pipe.sample(_layout(), None, SamplingSettings(steps=2, seed=5, sampler="ddim", guidance=1.5))[0]
    b = pipe.sample(_layout(), steps=2, seed=5, sampler="ddim", guidance=1.5)[0]
    assert np.array_equal(a.image, b.image)
    assert (a.params["steps"], a.params["seed"], a.params["sampler"], a.params["guidance"]) == (2, 5, "ddim", 1.5)


def test_checkpoint_errors(pipe, tmp_path):
    with pytest.raises(CheckpointError, match="config.json: missing"):
        CoSynPipeline.from_pretrained(tmp_path / "nothing")
    pipe.save_pretrained(tmp_path / "ck")
    (tmp_path / "ck" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="damaged or was replaced"):
        CoSynPipeline.from_pretrained(tmp_path / "ck")
    (tmp_path / "ck" / "checksums.json").unlink()  # as in a folder saved before checksums were kept
    with pytest.raises(CheckpointError, match="unreadable safetensors"):
        CoSynPipeline.from_pretrained(tmp_path / "ck")
    pipe.save_pretrained(tmp_path / "ck2")
    cfg = json.loads((tmp_path / "ck2" / "config.json").read_text())
    cfg["classes"] = cfg["classes"][:-1]
    cfg["denoiser"]["num_classes"] -= 1
    (tmp_path / "ck2" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"do not have the shapes config.json gives them \(label_in.weight"):
        CoSynPipeline.from_pretrained(tmp_path / "ck2")
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg["denoiser"]["block_out_channels"] = [w // 2 for w in cfg["denoiser"]["block_out_channels"]]
    (tmp_path / "ck2" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="tensors do not have the shapes") as e:
        CoSynPipeline.from_pretrained(tmp_path / "ck2")
    assert "class count" not in str(e.value)  # narrower widths are not a class-count mismatch
    for bad, message in (({"mpp": "0.5"}, "mpp must be a number"), ({"mpp": 0}, "mpp must be a number"),
                         ({"train_crop": None}, "train_crop must be an integer"),
                         ({"classes": "abc"}, "classes must be a list")):
        (tmp_path / "ck2" / "config.json").write_text(json.dumps({**cfg, **bad}))
        with pytest.raises(CheckpointError, match=message):
            CoSynPipeline.from_pretrained(tmp_path / "ck2")
    (tmp_path / "ck2" / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="expected a JSON object"):
        CoSynPipeline.from_pretrained(tmp_path / "ck2")
    (tmp_path / "ck2" / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        CoSynPipeline.from_pretrained(tmp_path / "ck2")


def test_config_reads_without_the_weights(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "ck")
    (tmp_path / "ck" / "model.safetensors").write_bytes(b"not a safetensors file")
    assert read_pipeline_config(tmp_path / "ck").classes == pipe.config.classes
    (tmp_path / "ck" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors: missing"):
        CoSynPipeline.from_pretrained(tmp_path / "ck")
    (tmp_path / "ck" / "config.json").write_text('{"format_version": 1}')
    with pytest.raises(CheckpointError, match="config.json: invalid config"):
        read_pipeline_config(tmp_path / "ck")


def test_non_square_layout_scales_x_and_y_separately(pipe):
    wide = _layout(width=300, height=100, mpp=0.25, points=[Point(290, 95, "epithelial"), Point(10, 99, "spindle")])
    canvas = pipe.conform_layout(wide)
    assert (canvas.width, canvas.height) == (150, 50)
    xy = canvas.xy()
    assert np.allclose(xy[:, 1], [47.25, 49.25])  # distinct rows, not both clamped to the bottom edge
    assert np.allclose(xy[:, 0], [144.75, 4.75])


def test_flipped_bytes_in_saved_weights_are_refused_at_load(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "ck")
    weights = tmp_path / "ck" / "model.safetensors"
    assert CoSynPipeline.from_pretrained(tmp_path / "ck").sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside a tensor: the file still parses, the weights are wrong
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors: sha256 .* differs .* damaged or was replaced"):
        CoSynPipeline.from_pretrained(tmp_path / "ck")


def test_a_layout_denser_than_any_training_tile_samples_with_a_warning(pipe):
    from cosyn.model.pipeline import DENSEST_TRAINED
    from cosyn.studio.views import missed_line

    assert pipe.sample(_layout(), steps=1)[0].params["warnings"] == []  # 3 nuclei on 32×32 µm: 29 per 100² µm
    rng = np.random.default_rng(0)
    crowded = _layout(points=[Point(float(x), float(y), "epithelial") for x, y in rng.uniform(0, 63, (200, 2))])
    assert crowded.density() > DENSEST_TRAINED  # 200 on 32×32 µm: 1953 per 100² µm
    params = pipe.sample(crowded, steps=1)[0].params
    assert len(params["warnings"]) == 1 and "beyond the densest training tile (420)" in params["warnings"][0]
    assert "beyond the densest training tile" in missed_line(params)


def test_a_prompt_that_is_not_text_is_refused(pipe):
    with pytest.raises(ValueError, match="prompt must be text, not list"):
        pipe.sample(_layout(), [1, 2], steps=1)
