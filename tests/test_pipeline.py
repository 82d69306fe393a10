"""Pipeline: shapes, determinism, batching, persistence, previews/cancel, bad input."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny import text_encoder, tiny_pipeline

from cosyn.cli import main
from cosyn.core.layout import Layout, LayoutError, Point
from cosyn.io.fileio import record_checksum
from cosyn.model.checkpoint import CheckpointError, read_pipeline_config
from cosyn.model.pipeline import CoSynPipeline, SamplingCancelled, SamplingError
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
        CoSynPipeline.from_pretrained(tmp_path / "ck", trust_unverified=True)
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
    for bad, message in (({"mpp": "0.5"}, "mpp='0.5' must be a number"), ({"mpp": 0}, r"mpp=0 must lie in 0.01..10"),
                         ({"train_crop": None}, "train_crop=None must be a whole number"),
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


def test_a_checkpoint_without_checksums_is_refused_unless_trusted_or_recorded(pipe, tmp_path, capsys):
    """Deleting checksums.json must not switch the integrity check off (issue 23, item 5)."""
    pipe.save_pretrained(tmp_path / "ck")
    (tmp_path / "ck" / "checksums.json").unlink()
    with pytest.raises(CheckpointError, match=r"model.safetensors: no checksum recorded \(there is no .*checksums"
                                              r".json\).*`cosyn checksum <checkpoint folder>`.*--trust-unverified"):
        CoSynPipeline.from_pretrained(tmp_path / "ck")
    (tmp_path / "ck" / "checksums.json").write_text("{}")  # a book that lists other files only
    with pytest.raises(CheckpointError, match="checksums.json does not list it"):
        CoSynPipeline.from_pretrained(tmp_path / "ck")
    assert len(CoSynPipeline.from_pretrained(tmp_path / "ck", trust_unverified=True).sha256) == 64

    layout = tmp_path / "l.json"
    _layout().save(layout)
    sample = ["sample", "--checkpoint", str(tmp_path / "ck"), "--layout", str(layout), "--steps", "1",
              "--formats", "png"]
    assert main([*sample, "--out", str(tmp_path / "refused")]) == 2
    assert "no checksum recorded" in capsys.readouterr().err
    assert main([*sample, "--out", str(tmp_path / "trusted"), "--trust-unverified"]) == 0
    assert (tmp_path / "trusted" / "000" / "image.png").is_file()

    assert main(["checksum", str(tmp_path / "ck")]) == 0  # the way the refusal names
    assert "model.safetensors: recorded sha256" in capsys.readouterr().out
    assert main(["checksum", str(tmp_path / "ck")]) == 0
    assert "already recorded, and matches" in capsys.readouterr().out
    weights = tmp_path / "ck" / "model.safetensors"
    assert CoSynPipeline.from_pretrained(tmp_path / "ck").sha256 == record_checksum(weights)
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert main(["checksum", str(tmp_path / "ck")]) == 2  # a damaged file is not blessed by recording it again
    assert "damaged or was replaced" in capsys.readouterr().err


def test_the_default_checkpoint_has_a_checksum_for_every_weight_file():
    default = Path(__file__).resolve().parents[1] / "checkpoints" / "default"
    books = {p.parent: json.loads(p.read_text()) for p in default.rglob("checksums.json")}
    weights = sorted(default.rglob("*.safetensors"))
    assert weights and all(w.name in books.get(w.parent, {}) for w in weights)


def _with_weights(pipe: CoSynPipeline, folder: Path, change) -> Path:
    """`pipe` saved to `folder`, its weights then changed by `change(state)` and their checksum recorded again:
    a damaged file that checks out, or an export from a run that diverged."""
    from safetensors.torch import load_file, save_file

    pipe.save_pretrained(folder)
    state = load_file(folder / "model.safetensors")
    change(state)
    save_file(state, folder / "model.safetensors")
    (folder / "checksums.json").unlink()
    record_checksum(folder / "model.safetensors")
    return folder


def test_weights_holding_nan_or_inf_are_refused_at_load_naming_the_file(pipe, tmp_path):
    def poison(state):
        state["head.3.bias"][0] = float("nan")
        state["head.3.weight"].view(-1)[:5] = float("inf")

    ck = _with_weights(pipe, tmp_path / "ck", poison)
    with pytest.raises(CheckpointError, match=r"ck/model.safetensors: .* values of head.3.\w+ are NaN or infinite"):
        CoSynPipeline.from_pretrained(ck)


def test_nothing_non_finite_is_saved(tmp_path):
    from tiny import tiny_pipeline

    pipe = tiny_pipeline()
    with torch.no_grad():
        pipe.model.head[3].bias[0] = 1e5  # finite in float32, inf in float16
    pipe.save_pretrained(tmp_path / "fp32")
    with pytest.raises(CheckpointError, match=r"fp16: not saved: 1 of 9 values of head.3.bias are NaN or infinite "
                                              r"\(largest \|value\| inf\) as float16"):
        pipe.save_pretrained(tmp_path / "fp16", dtype=torch.float16)
    assert not (tmp_path / "fp16").exists()


def _constant_output(bias: float):
    """A model whose image velocity is `bias` everywhere: +50 drives every pixel below black, 1e38 overflows."""
    def change(state):
        state["head.3.weight"].zero_()
        state["head.3.bias"][:3] = bias
    return change


def test_sampling_refuses_a_black_or_non_finite_result(pipe, tmp_path, capsys):
    """Before: NaN weights or guidance 1e30 wrote a black image and an all-NaN distance map, with exit code 0."""
    black = CoSynPipeline.from_pretrained(_with_weights(pipe, tmp_path / "black", _constant_output(50.0)),
                                          text_encoder=text_encoder())
    with pytest.raises(SamplingError, match=r"sampled image 1 of 1 is entirely black.*weights \(sha256 \w+…\) have "
                                            r"likely diverged"):
        black.sample(_layout(), steps=3, seed=0)
    overflow = CoSynPipeline.from_pretrained(_with_weights(pipe, tmp_path / "inf", _constant_output(1e38)),
                                             text_encoder=text_encoder())
    seen = []
    with pytest.raises(SamplingError, match=r"became NaN or infinite at step \d of 4") as e:
        overflow.sample(_layout(), steps=4, seed=0, on_step=lambda p: seen.append(p.step))
    failed = int(str(e.value).split(" at step ")[1][0])
    assert failed < 4 and seen == list(range(1, failed + 1))  # stopped at the first step that showed it

    layout = tmp_path / "l.json"
    _layout().save(layout)
    code = main(["sample", "--checkpoint", str(tmp_path / "black"), "--layout", str(layout), "--steps", "3",
                 "--out", str(tmp_path / "out")])
    assert code == 2 and "entirely black" in capsys.readouterr().err
    assert not list((tmp_path / "out").rglob("image.png"))


HUGE = "a 5,001-digit integer"  # json.dumps cannot write 10**5000 itself: put in as text


@pytest.mark.parametrize(("change", "message"), [
    ({"denoiser": {"block_out_channels": [10**6, 10**6]}}, r"block_out_channels=\(1000000, 1000000\) must lie in 8.."),
    ({"denoiser": {"layers_per_block": HUGE}}, r"not valid JSON \(Exceeds the limit \(4300 digits\)"),
    ({"denoiser": {"block_out_channels": [16] * 7, "attention_levels": [False] * 7}}, "7 levels; 1..5 are allowed"),
    ({"denoiser": {"cross_attention_dim": 2.5}}, "cross_attention_dim=2.5 must be a whole number"),
    ({"schedule": {"num_train_timesteps": 0}}, r"num_train_timesteps=0 must be a whole number in 2..10000"),
    ({"schedule": {"num_train_timesteps": 10**9}}, r"num_train_timesteps=1000000000 must be a whole number in 2.."),
    ({"schedule": {"prediction_type": "epsilon"}}, "prediction_type='epsilon' is not supported"),
    ({"schedule": {"clip_sample": True}}, r"schedule: unknown keys \['clip_sample'\]"),
    ({"max_canvas": 10**9}, r"max_canvas=1000000000 must lie in 8..8192"),
    ({"train_crop": 4}, r"train_crop=4 must lie in 8..2048"),
])
def test_absurd_checkpoint_configs_are_refused_by_name_before_anything_is_built(pipe, tmp_path, change, message):
    pipe.save_pretrained(tmp_path / "ck")
    path = tmp_path / "ck" / "config.json"
    cfg = json.loads(path.read_text())
    for key, value in change.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) else value
    path.write_text(json.dumps(cfg).replace(json.dumps(HUGE), "1" + "0" * 5000))
    with pytest.raises(CheckpointError, match=rf"ck/config.json: .*{message}"):
        CoSynPipeline.from_pretrained(tmp_path / "ck")


WIDE_CONFIG = """
import json, resource, sys
from pathlib import Path
from cosyn.model.checkpoint import CheckpointError
from cosyn.model.pipeline import CoSynPipeline
ck = Path(sys.argv[1])
cfg = json.loads((ck / "config.json").read_text())
cfg["denoiser"]["block_out_channels"] = [1024] * 4   # 721 million parameters: 2.9 GB as float32
cfg["denoiser"]["attention_levels"] = [False, False, True, True]
(ck / "config.json").write_text(json.dumps(cfg))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    CoSynPipeline.from_pretrained(ck)
except CheckpointError as e:
    print("REFUSED", e)
print("GROWTH_MB", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_a_config_wider_than_its_weights_is_refused_without_allocating_the_model(pipe, tmp_path):
    """A crafted config.json with huge (in-range) widths once built the whole model before the shape check."""
    pipe.save_pretrained(tmp_path / "ck")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", WIDE_CONFIG, str(tmp_path / "ck")], capture_output=True, text=True,
                         timeout=300, env={"PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert "REFUSED" in out.stdout and "tensors do not have the shapes config.json gives them" in out.stdout, \
        out.stderr[-2000:]
    growth = int(out.stdout.split("GROWTH_MB")[1])
    assert growth < 500, f"loading grew the process by {growth} MB"  # the real model would take 2,900


@pytest.mark.parametrize("argv", [
    ["sample", "--checkpoint", "ck", "--layout", "l.json", "--out", "o"],
    ["augment", "--checkpoint", "ck", "--data", "d", "--n", "1", "--out", "o"],
    ["edit", "--checkpoint", "ck", "--image", "i.png", "--annotation", "a.mat", "--layout", "l.json", "--out", "o"],
    ["evaluate", "--checkpoint", "ck", "--data", "d", "--out", "o"],
])
def test_every_command_that_loads_a_checkpoint_offers_trust_unverified(argv):
    from cosyn.cli import build_parser

    assert build_parser(argv).parse_args(argv).trust_unverified is False
    assert build_parser(argv).parse_args([*argv, "--trust-unverified"]).trust_unverified is True


def test_more_steps_than_the_checkpoints_schedule_are_refused_by_name():
    from cosyn.model.checkpoint import PipelineConfig
    from cosyn.model.denoiser import JointDenoiser
    from cosyn.model.diffusion.gaussian import DEFAULT_SCHEDULE

    base = tiny_pipeline().config
    config = PipelineConfig(base.denoiser, base.classes, schedule={**DEFAULT_SCHEDULE, "num_train_timesteps": 10})
    short = CoSynPipeline(JointDenoiser(config.denoiser), config, text_encoder())
    with pytest.raises(ValueError, match="steps=25: this checkpoint's noise schedule has 10 timesteps"):
        short.sample(_layout(), steps=25)
    assert short.sample(_layout(), steps=10)[0].image.any()
