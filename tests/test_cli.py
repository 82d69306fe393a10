"""`python -m cosyn ...` as a user runs it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from conftest import SHARED_DATA
from PIL import Image
from test_fileio import cosyn_killed_at_publish, needs_unshare, on_small_disk, temp_files
from tiny import tiny_pipeline

from cosyn.core.layout import Layout, Point

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosyn", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def test_help_lists_commands():
    out = _run("--help")
    assert out.returncode == 0
    for cmd in ("prepare", "train", "export-checkpoint", "prompt-cache", "sample", "augment", "evaluate"):
        assert cmd in out.stdout


def test_sample_writes_valid_bundles(tmp_path):
    tiny_pipeline().save_pretrained(tmp_path / "ck")
    layout = Layout(64, 64, ["background", "other", "inflammatory", "epithelial", "spindle"],
                    [Point(10, 10, "epithelial"), Point(40, 45, "inflammatory")], mpp=0.5, tissue="colon")
    layout.save(tmp_path / "l.json")
    out = _run("sample", "--checkpoint", str(tmp_path / "ck"), "--layout", str(tmp_path / "l.json"), "--steps", "3",
               "--n", "2", "--seed", "4", "--out", str(tmp_path / "out"))
    assert out.returncode == 0, out.stderr[-2000:]
    for i in range(2):
        b = tmp_path / "out" / f"{i:03d}"
        names = {p.name for p in b.iterdir()}
        assert {"image.png", "class.png", "class_rgb.png", "dist.npy", "layout.json", "params.json",
                "hovernet.mat", "qupath.geojson", "coco.json"} <= names
        params = json.loads((b / "params.json").read_text())
        assert params["seed"] == 4 and params["steps"] == 3 and len(params["checkpoint_sha256"]) == 64
        mat = scipy.io.loadmat(b / "hovernet.mat")
        assert {"inst_map", "type_map", "inst_type", "inst_centroid"} <= set(mat)
        assert np.load(b / "dist.npy", allow_pickle=False).shape == (64, 64)
    # the same triple written at twice the resolution: same field of view, labels still integers
    out = _run("sample", "--checkpoint", str(tmp_path / "ck"), "--layout", str(tmp_path / "l.json"), "--steps", "3",
               "--n", "2", "--seed", "4", "--output-mpp", "0.25", "--formats", "png", "--out", str(tmp_path / "fine"))
    assert out.returncode == 0, out.stderr[-2000:]
    fine, coarse = tmp_path / "fine" / "000", tmp_path / "out" / "000"
    assert json.loads((fine / "params.json").read_text())["output_mpp"] == 0.25
    fine_layout = Layout.load(fine / "layout.json")
    assert (fine_layout.width, fine_layout.height, fine_layout.mpp) == (128, 128, 0.25)
    assert [(p.x, p.y) for p in fine_layout.points] == [(20.5, 20.5), (80.5, 90.5)]
    fine_class, coarse_class = (np.array(Image.open(b / "class.png")) for b in (fine, coarse))
    assert np.array_equal(fine_class[::2, ::2], coarse_class)


def test_prompt_cache_covers_the_model_and_is_clear_on_a_bad_checkpoint(tmp_path):
    from cosyn.model.text_cache import PromptCache

    tiny_pipeline().save_pretrained(tmp_path / "ck")
    out = _run("prompt-cache", "--checkpoint", str(tmp_path / "ck"), "--out", str(tmp_path / "p.safetensors"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "wrote 770 prompt embeddings" in out.stdout  # CoNSeP's 4 classes, one tissue
    states, masks = PromptCache(tmp_path / "p.safetensors").encode([""])
    assert states.shape == (1, 48, 384) and masks.sum() == 2  # [CLS] [SEP]
    bad = _run("prompt-cache", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "q.safetensors"))
    assert bad.returncode == 2 and "nope/config.json: missing" in bad.stderr
    assert not (tmp_path / "q.safetensors").exists()


def test_sample_bad_layout_is_a_clear_error(tmp_path):
    tiny_pipeline().save_pretrained(tmp_path / "ck")
    (tmp_path / "bad.json").write_text(json.dumps({"width": 64, "height": 64, "classes": ["background", "other"],
                                                   "points": [{"x": 99, "y": 1, "cls": "other"}]}))
    out = _run("sample", "--checkpoint", str(tmp_path / "ck"), "--layout", str(tmp_path / "bad.json"),
               "--out", str(tmp_path / "o"))
    assert out.returncode == 2
    assert "bad.json: point 0 at (99, 1) lies outside the 64x64 canvas" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "o").exists()  # a refused sample leaves no empty --out behind


def test_sample_missing_checkpoint_is_a_clear_error(tmp_path):
    layout = Path(__file__).resolve().parents[1] / "assets" / "layouts" / "colon_mixed_stroma.json"
    out = _run("sample", "--checkpoint", str(tmp_path / "nope"), "--layout", str(layout),
               "--out", str(tmp_path / "o" / "deeper"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "nope/config.json: missing" in out.stderr
    assert list(tmp_path.iterdir()) == []  # neither --out nor the parent it created is left behind


def test_sample_refuses_an_unwritable_out_before_loading_anything(tmp_path):
    (tmp_path / "a_file").write_text("")
    layout = ROOT / "assets" / "layouts" / "colon_mixed_stroma.json"
    # the checkpoint does not exist either: the destination is checked first, before minutes of sampling
    out = _run("sample", "--checkpoint", str(tmp_path / "nope"), "--layout", str(layout),
               "--out", str(tmp_path / "a_file" / "o"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "a_file/o: cannot write there" in out.stderr


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"real CoNSeP patches not found at {SHARED_DATA}")
def test_prepare_real_consep(tmp_path):
    out = _run("prepare", "--format", "auto", str(SHARED_DATA), "--out", str(tmp_path / "prep"))
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads((tmp_path / "prep" / "report.json").read_text())
    assert report["samples"] == 432 and report["instances"]["total"] == 18216
    assert "432" in (tmp_path / "prep" / "report.md").read_text()
    again = _run("prepare", str(SHARED_DATA), "--out", str(tmp_path / "prep"))
    assert again.returncode == 2 and "Traceback" not in again.stderr


def test_sample_refuses_bad_options_before_sampling_and_keeps_existing_bundles(tmp_path):
    tiny_pipeline().save_pretrained(tmp_path / "ck")
    layout = Path(__file__).resolve().parents[1] / "assets" / "layouts" / "colon_mixed_stroma.json"
    base = ("sample", "--checkpoint", str(tmp_path / "ck"), "--layout", str(layout), "--steps", "2")
    (tmp_path / "o" / "001").mkdir(parents=True)
    out = _run(*base, "--n", "2", "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "o/001 exists; pass --overwrite" in out.stderr
    assert not (tmp_path / "o" / "000").exists()  # refused before anything was written
    out = _run(*base, "--formats", "png,tif", "--out", str(tmp_path / "p"))
    assert out.returncode == 2 and "unknown export format(s) ['tif']" in out.stderr and not (tmp_path / "p").exists()
    out = _run(*base, "--sampler", "euler", "--out", str(tmp_path / "q"))
    assert out.returncode == 2 and "unknown sampler 'euler'" in out.stderr and "Traceback" not in out.stderr
    out = _run(*base[:-2], "--steps", "0", "--out", str(tmp_path / "r"))
    assert out.returncode == 2 and "steps=0 must lie in 1..1000" in out.stderr
    out = _run(*base, "--guidance", "nan", "--out", str(tmp_path / "s"))  # was sampled into black images
    assert out.returncode == 2 and "guidance=nan must be a finite number" in out.stderr
    assert not (tmp_path / "s").exists()


def test_no_refine_writes_the_base_model_resolution(tmp_path):
    tiny_pipeline().save_pretrained(tmp_path / "ck")  # 0.5 µm/px: the Upsampler brings it to 0.25
    layout = Layout(64, 64, ["background", "other", "inflammatory", "epithelial", "spindle"],
                    [Point(10, 10, "epithelial"), Point(40, 45, "inflammatory")], mpp=0.25, tissue="colon")
    layout.save(tmp_path / "l.json")
    base = ("sample", "--checkpoint", str(tmp_path / "ck"), "--layout", str(tmp_path / "l.json"), "--steps", "2",
            "--formats", "png")
    refined = _run(*base, "--out", str(tmp_path / "refined"))
    plain = _run(*base, "--no-refine", "--out", str(tmp_path / "plain"))
    assert refined.returncode == 0 and plain.returncode == 0, refined.stderr[-2000:] + plain.stderr[-2000:]
    assert "base + upsampler at 0.25 µm/px" in refined.stdout and "base at 0.5 µm/px" in plain.stdout
    for name, side, mpp, stages in (("refined", 64, 0.25, ["base", "upsampler"]), ("plain", 32, 0.5, ["base"])):
        bundle = tmp_path / name / "000"
        assert Image.open(bundle / "image.png").size == (side, side)
        assert Layout.load(bundle / "layout.json").mpp == mpp
        assert json.loads((bundle / "params.json").read_text())["stages"] == stages


def test_train_with_a_missing_or_broken_config_names_the_file(tmp_path):
    out = _run("train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--config", str(tmp_path / "no.json"))
    assert out.returncode == 2 and "no.json" in out.stderr and "Traceback" not in out.stderr
    (tmp_path / "bad.json").write_text("{lr: 1}")
    out = _run("train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--config", str(tmp_path / "bad.json"))
    assert out.returncode == 2 and "bad.json: not valid JSON" in out.stderr and "Traceback" not in out.stderr


def test_a_killed_sample_leaves_no_temp_folder_after_a_successful_rerun(tmp_path):
    tiny_pipeline().save_pretrained(tmp_path / "ck")
    layout = ROOT / "assets" / "layouts" / "colon_mixed_stroma.json"
    args = ("sample", "--checkpoint", str(tmp_path / "ck"), "--layout", str(layout), "--steps", "2", "--formats",
            "png", "--out", str(tmp_path / "o"))
    killed = cosyn_killed_at_publish("001", *args, "--n", "2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert temp_files(tmp_path / "o")  # bundle 001's temp folder, written in full but never renamed
    rerun = _run(*args, "--n", "1", "--overwrite")  # a rerun that writes only 000
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert temp_files(tmp_path / "o") == [] and sorted(p.name for p in (tmp_path / "o").iterdir()) == ["000"]


def test_sample_refuses_to_overwrite_a_bundle_that_holds_its_layout(tmp_path):
    tiny_pipeline().save_pretrained(tmp_path / "ck")
    layout = tmp_path / "o" / "000" / "layout.json"
    layout.parent.mkdir(parents=True)
    layout.write_text((ROOT / "assets" / "layouts" / "colon_mixed_stroma.json").read_text())
    out = _run("sample", "--checkpoint", str(tmp_path / "ck"), "--layout", str(layout), "--steps", "2",
               "--overwrite", "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"--out {tmp_path / 'o' / '000'} contains the input {layout}" in out.stderr
    assert layout.is_file()


def test_a_huge_layout_file_or_number_is_refused_naming_the_file(tmp_path):
    checkpoint = tmp_path / "nope"  # refused before the checkpoint is looked at
    out = _run("sample", "--checkpoint", str(checkpoint), "--layout", "/dev/zero", "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "/dev/zero: larger than the 50 MB a layout file may have" in out.stderr
    (tmp_path / "digits.json").write_text('{"width": ' + "1" * 5000 + ', "height": 64, "classes": []}')
    out = _run("sample", "--checkpoint", str(checkpoint), "--layout", str(tmp_path / "digits.json"),
               "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"{tmp_path / 'digits.json'}: holds a number of more than 4300 digits" in out.stderr
    assert not (tmp_path / "o").exists()


@needs_unshare
def test_a_full_disk_in_sample_says_so_naming_the_folder_and_leaves_nothing(tmp_path):
    tiny_pipeline().save_pretrained(tmp_path / "ck")
    layout = ROOT / "assets" / "layouts" / "colon_mixed_stroma.json"
    # 16 KiB: the 4 KiB write check passes, the bundle does not fit
    script = ('"$1" -m cosyn sample --checkpoint "$2" --layout "$3" --steps 2 --out "$DISK/out"; echo "rc=$?"; '
              'ls -A "$DISK"')
    done = on_small_disk(tmp_path / "disk", script, sys.executable, str(tmp_path / "ck"), str(layout), kib=16)
    assert "Traceback" not in done.stderr and "requested and" not in done.stderr
    assert f"error: {tmp_path / 'disk' / 'out'}: cannot write there: the disk is full" in done.stderr
    assert done.stdout.splitlines() == ["rc=2"]  # no temp folder, and the empty --out removed


@needs_unshare
def test_prompt_cache_into_a_read_only_folder_says_so(tmp_path):
    tiny_pipeline().save_pretrained(tmp_path / "ck")
    script = '"$1" -m cosyn prompt-cache --checkpoint "$2" --out "$DISK/p.safetensors"'
    done = on_small_disk(tmp_path / "disk", script, sys.executable, str(tmp_path / "ck"), read_only=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"error: {tmp_path / 'disk'}: cannot write there: the file system is read-only" in done.stderr


def test_prepare_refuses_an_out_that_holds_the_source_and_keeps_it(tmp_path, make_disc_sample):
    from cosyn.data.formats import write_dataset
    from cosyn.data.prepare import prepare
    from cosyn.io.guards import OverlapError

    raw = tmp_path / "datasets" / "raw"
    write_dataset([make_disc_sample(name="a_000")], raw, "folder")
    before = sorted(p.relative_to(raw) for p in raw.rglob("*"))
    # the reported case, as a user typed it: --out the parent of the source, with --overwrite
    done = _run("prepare", str(raw), "--format", "folder", "--out", str(raw.parent), "--overwrite")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"error: --out {raw.parent} contains the input {raw}" in done.stderr
    assert "Choose a --out outside" in done.stderr
    for out in (raw, raw / "prepared"):  # the source itself, and a folder inside it
        with pytest.raises(OverlapError, match="--out"):
            prepare(raw, out, "folder", progress=False, overwrite=True)
    assert sorted(p.relative_to(raw) for p in raw.rglob("*")) == before


@pytest.mark.parametrize(("args", "named"), [
    (["prepare", "SRC", "--out", "OUT", "--mpp", "nan"], "--mpp nan must be a number of µm per pixel in 0.01..10"),
    (["augment", "--checkpoint", "CKPT", "--data", "SRC", "--n", "1", "--out", "OUT", "--threads", "100000"],
     "invalid options: threads=100000 must lie in 0.."),
    (["evaluate", "--checkpoint", "CKPT", "--data", "SRC", "--out", "OUT", "--threads", "100000"],
     "invalid options: threads=100000 must lie in 0.."),
    (["evaluate", "--checkpoint", "CKPT", "--data", "SRC", "--out", "OUT", "--segmenter-steps", "-5"],
     "invalid segmenter training options: steps=-5 must lie in 1..1000000"),
    (["evaluate", "--checkpoint", "CKPT", "--data", "SRC", "--out", "OUT", "--val-fraction", "nan"],
     "invalid evaluate options: val_fraction=nan must lie in 0..0.9"),
])
def test_absurd_numbers_of_every_command_are_refused_by_name(tmp_path, make_disc_sample, args, named):
    """Each once ran on, or ended in a traceback (`--threads 100000` ran out of memory in libgomp)."""
    from cosyn.data.formats import write_dataset

    src = tmp_path / "src"
    write_dataset([make_disc_sample(name="a_000")], src, "folder")
    swap = {"SRC": str(src), "OUT": str(tmp_path / "out"), "CKPT": str(ROOT / "checkpoints" / "default")}
    done = _run(*[swap.get(a, a) for a in args])
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert named in done.stderr
    assert not (tmp_path / "out").exists()
