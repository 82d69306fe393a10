"""Training engine on tiny configs: overfit, exact resume, kill -9, signals, failures, fine-tuning, 2 ranks."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import disc_sample
from safetensors.torch import load_file, save_file
from tiny import TINY_DENOISER, text_encoder

from cosyn.core.classes import CONSEP, PANNUKE
from cosyn.data.formats import write_dataset
from cosyn.data.targets import layout_from_sample
from cosyn.model.pipeline import CoSynPipeline
from cosyn.stages.texture import load_bank
from cosyn.training import trainer as trainer_module
from cosyn.training.checkpoints import checkpoint_dirs, export_checkpoint
from cosyn.training.config import TrainConfig, TrainingError
from cosyn.training.schedule import TimeBudget
from cosyn.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]


def _dataset(path: Path, classes=CONSEP, n_tiles: int = 3) -> Path:
    samples = [disc_sample(n=9 + 3 * i, size=(64, 64), classes=classes, name=f"t{i}_000", seed=i)
               for i in range(n_tiles)]
    write_dataset(samples, path, "folder")
    return path


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = {"data": str(data), "out": str(out), "steps": 6, "batch": 2, "crop": 32, "mpp": 0.25,
            "val_fraction": 0, "save_every": 3, "preview_every": 0, "log_every": 1, "threads": 1,
            "denoiser": dict(TINY_DENOISER)}
    base.update(kw)
    return TrainConfig.from_dict(base)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cosyn", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_overfit_reproduces_labels_from_layout(tmp_path):
    """A tiny model trained briefly on 2 tiles draws their nuclei where their centroids are:
    the conditioning path works end to end (a random model scores ~0 here)."""
    samples = [disc_sample(n=9, size=(64, 64), name="a_000", seed=0),
               disc_sample(n=14, size=(64, 64), name="b_000", seed=1)]
    write_dataset(samples, tmp_path / "data", "folder")
    cfg = _cfg(tmp_path / "data", tmp_path / "run", steps=250, batch=4, crop=48, lr=2e-3, warmup=20,
               save_every=1000, log_every=50, ema_decay=0.99)
    train(cfg)
    export_checkpoint(tmp_path / "run", tmp_path / "ck")
    pipe = CoSynPipeline.from_pretrained(tmp_path / "ck", text_encoder=text_encoder())
    for sampler in ("ddim", "dpm++", "unipc"):  # every offered sampler, on a trained model
        for s in samples:
            tr = pipe.sample(layout_from_sample(s), steps=10, sampler=sampler, seed=0)[0]
            pred, true = tr.class_map > 0, s.class_map > 0
            iou = (pred & true).sum() / (pred | true).sum()
            assert iou > 0.8, f"{sampler}, {s.name}: foreground IoU {iou:.2f}"
            assert (tr.class_map[true] == s.class_map[true]).mean() > 0.85
            assert tr.params["missed_centroids"] == 0
            assert np.abs(tr.image.astype(float).mean() - s.image.mean()) < 40  # no exploded colours


def test_resume_continues_exactly(tmp_path):
    data = _dataset(tmp_path / "data")
    train(_cfg(data, tmp_path / "straight", steps=6))
    train(_cfg(data, tmp_path / "split", steps=3))
    train(_cfg(data, tmp_path / "split", steps=6), resume=True)
    a = load_file(checkpoint_dirs(tmp_path / "straight")[-1] / "model.safetensors")
    b = load_file(checkpoint_dirs(tmp_path / "split")[-1] / "model.safetensors")
    assert all(np.allclose(a[k].numpy(), b[k].numpy(), atol=1e-6) for k in a)
    steps = [m["step"] for m in _metrics(tmp_path / "split")]
    assert steps == list(range(1, 7))
    assert [m["loss"] for m in _metrics(tmp_path / "split")] == pytest.approx(
        [m["loss"] for m in _metrics(tmp_path / "straight")], rel=1e-4)


def test_kill_9_then_resume_loses_at_most_one_interval(tmp_path):
    data, run = _dataset(tmp_path / "data"), tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(run), "--crop", "32", "--batch", "2", "--mpp", "0.25",
            "--threads", "1", "--config", str(tmp_path / "c.json")]
    (tmp_path / "c.json").write_text(json.dumps({"denoiser": TINY_DENOISER, "save_every": 4, "log_every": 1,
                                                 "preview_every": 0, "val_fraction": 0}))
    proc = subprocess.Popen(_cli(*args, "--steps", "500"), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not any(int(d.name[5:]) >= 8 for d in checkpoint_dirs(run)):
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    saved = int(checkpoint_dirs(run)[-1].name[5:])
    logged = _metrics(run)[-1]["step"]
    assert saved >= 8 and logged - saved < 4 + 1
    # what a kill in the middle of writing status.json or a checkpoint leaves (the kill's timing cannot promise one)
    host = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname()) or "host"
    leftovers = [run / f".cosyn-tmp.status.json.{host}-{proc.pid}.x1.tmp",
                 run / "checkpoints" / f".cosyn-tmp.step_99.{host}-{proc.pid}.x2.tmp"]
    for path in leftovers:
        path.write_text("half")
    target = saved + 3
    done = subprocess.run(_cli(*args, "--steps", str(target), "--resume"), env=_env(), capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resumed from" in (run / "train.log").read_text()
    steps = [m["step"] for m in _metrics(run)]
    assert steps == list(range(1, target + 1))
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")], "a killed run's temp files survived the rerun"


def test_sigterm_to_the_process_group_saves_then_exits_cleanly(tmp_path):
    """As `timeout` or Ctrl-C deliver it: to the trainer and its data workers alike."""
    data, run = _dataset(tmp_path / "data"), tmp_path / "run"
    (tmp_path / "c.json").write_text(json.dumps({"denoiser": TINY_DENOISER, "save_every": 1000, "log_every": 1,
                                                 "preview_every": 0, "val_fraction": 0, "workers": 1}))
    proc = subprocess.Popen(_cli("train", "--data", str(data), "--out", str(run), "--crop", "32", "--batch", "2",
                                 "--mpp", "0.25", "--threads", "1", "--steps", "5000",
                                 "--config", str(tmp_path / "c.json")),
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not (run / "metrics.jsonl").exists():
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, proc.stderr.read()[-2000:]
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "stopped"
    assert checkpoint_dirs(run)[-1].name == f"step_{status['step']:07d}"


def test_divergence_stops_at_the_first_step_and_keeps_the_last_good_checkpoint(tmp_path):
    """Optimiser moments turned NaN (as a damaged checkpoint or an overflow leaves them): the update of step 4 writes
    NaN into the weights. The run stops at that step, before its loss or a checkpoint could carry it on; only the
    last checkpoint whose weights are finite stays, and it exports and samples."""
    from cosyn.io.state_io import load_state, save_state

    data, run = _dataset(tmp_path / "data"), tmp_path / "run"
    train(_cfg(data, run, steps=3))
    optim = checkpoint_dirs(run)[-1] / "optim"
    state = load_state(optim)
    for moments in state["state"].values():
        moments["exp_avg"].fill_(float("nan"))
    save_state(state, optim)
    with pytest.raises(TrainingError, match=r"the weights diverged at step 4 \(.* are NaN or infinite or beyond "
                                            r"±65504.*\); stopped without saving them. Last good checkpoint: "
                                            r".*step_0000003. Try a lower --lr"):
        train(_cfg(data, run, steps=6), resume=True)
    assert [d.name for d in checkpoint_dirs(run)] == ["step_0000003"]
    assert [m["step"] for m in _metrics(run)] == [1, 2, 3]
    assert json.loads((run / "status.json").read_text())["state"] == "failed"
    for name in ("model.safetensors", "ema.safetensors"):
        assert all(torch.isfinite(t).all() for t in load_file(checkpoint_dirs(run)[-1] / name).values())


def test_weights_that_are_not_finite_are_never_written(tmp_path):
    from diffusers.training_utils import EMAModel

    from cosyn.model.denoiser import DenoiserConfig, JointDenoiser
    from cosyn.training.checkpoints import save_checkpoint

    model = JointDenoiser(DenoiserConfig(**TINY_DENOISER))
    ema = EMAModel(model.parameters())
    optimizer = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    save_checkpoint(tmp_path, 1, model, ema, optimizer, sched, keep=2)
    ema.shadow_params[0].fill_(3e27)  # the "last good checkpoint" lr=1e30 used to keep
    with pytest.raises(TrainingError, match=r"diverged by step 2 \(.* of EMA gauss_in.weight are NaN or infinite or "
                                            r"beyond ±65504 \(largest \|value\| 3e\+27\)\).*step_0000001"):
        save_checkpoint(tmp_path, 2, model, ema, optimizer, sched, keep=2)
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    with pytest.raises(TrainingError, match="values of model gauss_in.weight are NaN"):
        save_checkpoint(tmp_path, 3, model, ema, optimizer, sched, keep=2)
    assert [d.name for d in checkpoint_dirs(tmp_path)] == ["step_0000001"]
    assert not list((tmp_path / "checkpoints").glob(".*"))


def test_export_refuses_weights_the_export_dtype_cannot_hold(tmp_path):
    """A run of an earlier version kept weights of 3e27: exported as float16 they were all inf (issue 23)."""
    from cosyn.io.state_io import load_state, save_state

    data, run = _dataset(tmp_path / "data"), tmp_path / "run"
    train(_cfg(data, run, steps=3))
    ema = checkpoint_dirs(run)[-1] / "ema"
    state = load_state(ema)
    state["shadow_params"][0].fill_(3e27)
    save_state(state, ema)
    with pytest.raises(TrainingError, match=r"run: the EMA weights of .*step_0000003 cannot be exported as float16 "
                                            r"\(.*beyond ±65504 \(largest \|value\| 3e\+27\)\): the run diverged"):
        export_checkpoint(run, tmp_path / "ck", second_stage="upsampler")
    assert not (tmp_path / "ck").exists()
    state["shadow_params"][0].fill_(float("inf"))
    save_state(state, ema)
    with pytest.raises(TrainingError, match="cannot be exported as float32"):
        export_checkpoint(run, tmp_path / "ck", dtype=torch.float32, second_stage="upsampler")
    assert not (tmp_path / "ck").exists()


def test_an_existing_run_needs_resume_or_overwrite(tmp_path):
    """`train --out <finished run>` used to train into it: config and status rewritten, metrics appended, the old
    checkpoints pruned by the new ones, and a later export's model card naming the wrong data."""
    data, run = _dataset(tmp_path / "data"), tmp_path / "run"
    train(_cfg(data, run, steps=3))
    export_checkpoint(run, tmp_path / "ck")  # builds the run's texture bank in run/second_stage
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    with pytest.raises(TrainingError, match=r"run already holds a run \(run_config.json, checkpoints, metrics.jsonl, "
                                            r"status.json, train.log, second_stage\); pass --resume to continue it, "
                                            r"or --overwrite to delete it and start again"):
        train(_cfg(data, run, steps=2, seed=1))
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before  # untouched
    cli = subprocess.run(_cli("train", "--data", str(data), "--out", str(run), "--steps", "2"), env=_env(),
                         capture_output=True, text=True, timeout=240)
    assert cli.returncode == 2 and "pass --resume to continue it, or --overwrite" in cli.stderr
    assert "Traceback" not in cli.stderr
    with pytest.raises(TrainingError, match="pass one of them"):
        train(_cfg(data, run, steps=2), resume=True, overwrite=True)

    (run / "notes.txt").write_text("the user's own")
    train(_cfg(data, run, steps=2, seed=1, save_every=1), overwrite=True)
    assert [m["step"] for m in _metrics(run)] == [1, 2]  # not 1, 2, 3, 1, 2
    assert [d.name for d in checkpoint_dirs(run)] == ["step_0000001", "step_0000002"]
    assert json.loads((run / "run_config.json").read_text())["train"]["seed"] == 1
    assert not (run / "second_stage").exists()  # the old data's texture bank went with the old run
    assert (run / "notes.txt").read_text() == "the user's own"
    with pytest.raises(ValueError, match=r"--out .*data/run lies inside the input"):
        train(_cfg(data, data / "run", steps=1), overwrite=True)


@pytest.mark.parametrize(("options", "named"), [
    ({"workers": 100000}, "workers=100000 is more than this machine's"),
    ({"threads": -1}, "threads=-1 must lie in 0.."),
    ({"lr": -1}, "lr=-1 must lie in 1e-12..0.1 (AdamW's step size: at 0 or below nothing is learnt"),
    ({"lr": 1e30}, "lr=1e+30 must lie in 1e-12..0.1"),
    ({"steps": 0}, "steps=0 must lie in 1..10000000"),
    ({"batch": 10**6}, "batch=1000000 must lie in 1..1024"),
    ({"ema_decay": 1.5}, "ema_decay=1.5 must lie in 0..0.99999"),
    ({"weight_decay": 1e9}, "weight_decay=1000000000.0 must lie in 0..1"),
    ({"crop": 10**9}, "crop=1000000000 must lie in 8..2048"),
    ({"denoiser": {"block_out_channels": [10**7]}}, "denoiser: block_out_channels=(10000000,) must lie in 8..1024"),
    ({"denoiser": {"block_out_channels": "wide"}}, "denoiser: block_out_channels='wide' must be a list"),
])
def test_finite_but_absurd_options_are_refused_with_their_range(options, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        TrainConfig.from_dict({"data": "x", **options})


def test_cli_names_the_file_of_a_bad_config_and_gives_the_lr_range(tmp_path):
    cases = {"list.json": ("[1, 2]", "list.json: expected a JSON object of training options, got list"),
             "digits.json": ('{"steps": 1' + "0" * 5000 + "}", "digits.json: not valid JSON (Exceeds the limit"),
             "workers.json": ('{"workers": 100000}', "workers.json: invalid training options: workers=100000 is more "
                                                     "than this machine's")}
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        out = subprocess.run(_cli("train", "--data", "x", "--out", str(tmp_path / "run"), "--config",
                                  str(tmp_path / name)), env=_env(), capture_output=True, text=True, timeout=240)
        # exit status 2, as every other command's bad options
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]
    out = subprocess.run(_cli("train", "--data", "x", "--out", str(tmp_path / "run"), "--lr", "-1"), env=_env(),
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "lr=-1.0 must lie in 1e-12..0.1 (AdamW's step size" in out.stderr
    assert not (tmp_path / "run").exists()


DISK_FULL = """
import resource, signal, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_train import _dataset, _cfg
from cosyn.training.config import TrainingError
from cosyn.training.trainer import train
tmp = Path({tmp!r})
train(_cfg(_dataset(tmp / "data"), tmp / "run", steps=3))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # writes past the limit fail with EFBIG like a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
try:
    train(_cfg(tmp / "data", tmp / "run", steps=6), resume=True)
except TrainingError as e:
    print("ERROR:", e)
"""


def test_disk_full_is_clear_and_keeps_previous_checkpoint(tmp_path):
    out = subprocess.run([sys.executable, "-c", DISK_FULL.format(tests=str(ROOT / "tests"), tmp=str(tmp_path))],
                         env=_env(), capture_output=True, text=True, timeout=240)
    assert "ERROR: could not write checkpoint at step 6" in out.stdout, out.stderr[-2000:]
    assert "step_0000003 is intact" in out.stdout
    ckpts = checkpoint_dirs(tmp_path / "run")
    assert [d.name for d in ckpts] == ["step_0000003"]
    assert load_file(ckpts[0] / "model.safetensors")  # still loadable
    assert not list((tmp_path / "run" / "checkpoints").glob(".*"))  # no temp folder left behind


def test_fine_tune_maps_classes_by_name(tmp_path):
    run = tmp_path / "base"
    train(_cfg(_dataset(tmp_path / "consep"), run, steps=2))
    export_checkpoint(run, tmp_path / "ck")
    base = CoSynPipeline.from_pretrained(tmp_path / "ck")
    ft = tmp_path / "ft"
    train(_cfg(_dataset(tmp_path / "pannuke", classes=PANNUKE), ft, steps=1, init=str(tmp_path / "ck"), lr=1e-12,
               warmup=0))
    log = (ft / "train.log").read_text()
    assert "Kept by name: ['inflammatory', 'epithelial']" in log
    assert "re-initialised: ['neoplastic', 'connective', 'dead']" in log
    with pytest.raises(TrainingError, match="ck exists; pass --overwrite"):
        export_checkpoint(ft, tmp_path / "ck")  # the base model (and its card) stays
    (tmp_path / "ck" / "evaluation.md").write_text("the base model's report")
    export_checkpoint(ft, tmp_path / "ck", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["MODEL_CARD.md", "checksums.json", "config.json",
                                                                   "model.safetensors", "second_stage"]
    # the fine-tuned model's texture comes from its own data: a bank of the fine-tune run's training split
    assert json.loads((tmp_path / "ck" / "config.json").read_text())["second_stage"]["name"] == "texture"
    assert (ft / "second_stage" / "texture_bank.safetensors").is_file()
    assert load_bank(tmp_path / "ck" / "second_stage" / "texture_bank.safetensors").classes == PANNUKE.to_list()
    assert "# CoSyn checkpoint `ck`" in (tmp_path / "ck" / "MODEL_CARD.md").read_text()
    export_checkpoint(ft, tmp_path / "ck2")
    tuned = CoSynPipeline.from_pretrained(tmp_path / "ck2")
    assert tuned.config.classes == PANNUKE.to_list()
    old_w, new_w = base.model.label_in.weight, tuned.model.label_in.weight
    for name in ("inflammatory", "epithelial"):
        assert np.allclose(new_w[:, PANNUKE.id_of(name)].detach(), old_w[:, CONSEP.id_of(name)].detach(), atol=1e-3)

    shutil.rmtree(ft / "second_stage")  # no bank yet, and the data it would come from is gone
    shutil.rmtree(tmp_path / "pannuke")
    with pytest.raises(TrainingError, match="--second-stage upsampler"):
        export_checkpoint(ft, tmp_path / "ck3")
    assert not (tmp_path / "ck3").exists()
    export_checkpoint(ft, tmp_path / "ck3", second_stage="upsampler")
    assert json.loads((tmp_path / "ck3" / "config.json").read_text())["second_stage"] == {"name": "upsampler"}
    assert not (tmp_path / "ck3" / "second_stage").exists()


def test_two_processes_read_disjoint_data_and_only_rank0_writes(tmp_path):
    data, run = _dataset(tmp_path / "data", n_tiles=4), tmp_path / "run"
    (tmp_path / "c.json").write_text(json.dumps({"denoiser": TINY_DENOISER, "save_every": 2, "log_every": 1,
                                                 "preview_every": 0, "val_fraction": 0}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "cosyn", "train",
           "--data", str(data), "--out", str(run), "--crop", "32", "--batch", "2", "--mpp", "0.25",
           "--threads", "1", "--steps", "4", "--config", str(tmp_path / "c.json")]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # one writer: no duplicated lines
    seen = [p for r in rows for rank in r["positions"] for p in rank]
    assert all(len(r["positions"]) == 2 for r in rows)
    assert len(seen) == len(set(seen)) == 4 * 2 * 2  # both ranks, disjoint positions
    assert [d.name for d in checkpoint_dirs(run)] == ["step_0000002", "step_0000004"]


def clocked_budget(tick: float):
    """TimeBudget on a fake clock that advances `tick` s per reading. It reads the clock once a training
    step, so the fitted length depends on step counts, not on how busy the machine is; the short probe
    (steps 2..12 instead of 20..120) keeps the runs short."""
    now = [1000.0]

    def clock() -> float:
        now[0] += tick
        return now[0]

    return functools.partial(TimeBudget, clock=clock, probe=(2, 12))


CLOCKED_CLI = """
import os, sys
sys.path.insert(0, {tests!r})
from test_train import clocked_budget
import cosyn.training.trainer as trainer
trainer.TimeBudget = clocked_budget(0.01 * (1 + int(os.environ["RANK"])))  # rank 1 runs at half speed
from cosyn.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_two_processes_agree_on_the_time_limited_length(tmp_path):
    """Both ranks take the slower one's fitted step count, so they stop together with the
    schedule done. Rank 1's clock runs at half rank 0's speed: a sum or maximum instead of the
    minimum would run rank 1 into its deadline, which stops the run early."""
    data, run = _dataset(tmp_path / "data", n_tiles=4), tmp_path / "run"
    (tmp_path / "c.json").write_text(json.dumps({"denoiser": TINY_DENOISER, "save_every": 100000, "log_every": 10,
                                                 "preview_every": 0, "val_fraction": 0, "time_limit": 0.01,
                                                 "warmup": 2}))
    script = tmp_path / "clocked_cosyn.py"
    script.write_text(CLOCKED_CLI.format(tests=str(Path(__file__).parent)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script), "train",
           "--data", str(data), "--out", str(run), "--crop", "32", "--batch", "2", "--mpp", "0.25",
           "--threads", "1", "--steps", "1000000", "--config", str(tmp_path / "c.json")]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = json.loads((run / "run_config.json").read_text())["train"]["steps"]
    assert 12 < steps < 1_000_000
    assert f"time limit 0.01 min: {steps} steps fit, instead of 1000000" in (run / "train.log").read_text()
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    assert _metrics(run)[-1]["lr"] == pytest.approx(0, abs=1e-12)
    assert [d.name for d in checkpoint_dirs(run)] == [f"step_{steps:07d}"]


def test_unreadable_samples_are_skipped_and_counted_up_to_a_threshold(tmp_path):
    data = _dataset(tmp_path / "data", n_tiles=4)
    images = sorted((data / "images").iterdir())
    images[0].write_bytes(b"not an image")
    train(_cfg(data, tmp_path / "run", steps=1, max_bad_fraction=0.3))
    log = (tmp_path / "run" / "train.log").read_text()
    assert f"skipped unreadable sample: {images[0]}" in log
    assert "data: 3 samples" in log
    images[1].write_bytes(b"not an image either")
    with pytest.raises(TrainingError, match="2 of 4 samples are unreadable, over the 30% threshold"):
        train(_cfg(data, tmp_path / "run2", steps=1, max_bad_fraction=0.3))


def test_cli_resume_without_steps_keeps_the_run_length(tmp_path):
    data, run = _dataset(tmp_path / "data"), tmp_path / "run"
    (tmp_path / "c.json").write_text(json.dumps({"denoiser": TINY_DENOISER, "save_every": 2, "log_every": 1,
                                                 "preview_every": 0, "val_fraction": 0}))
    first = subprocess.run(_cli("train", "--data", str(data), "--out", str(run), "--crop", "32", "--batch", "2",
                                "--mpp", "0.25", "--threads", "1", "--steps", "4", "--config",
                                str(tmp_path / "c.json")), env=_env(), capture_output=True, text=True, timeout=240)
    assert first.returncode == 0, first.stderr[-2000:]
    again = subprocess.run(_cli("train", "--out", str(run), "--resume"), env=_env(), capture_output=True, text=True,
                           timeout=240)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((run / "status.json").read_text())["step"] == 4  # not the 10,000 default
    assert json.loads((run / "run_config.json").read_text())["train"]["crop"] == 32


def test_bad_training_options_are_refused_before_starting():
    with pytest.raises(ValueError, match="save_every=0"):
        TrainConfig(data="x", save_every=0)
    with pytest.raises(ValueError, match="text_drop=1.5"):
        TrainConfig(data="x", text_drop=1.5)


@pytest.mark.parametrize(("options", "named"), [
    ({"lr": float("inf")}, "lr=inf must be a finite number"),
    ({"ema_decay": float("nan")}, "ema_decay=nan must be a finite number"),
    ({"mpp": "0.5"}, "mpp='0.5' must be a finite number"),
    ({"steps": 2.5}, "steps=2.5 must be a whole number"),
    ({"bf16": "yes"}, "bf16='yes' must be true or false"),
    ({"denoiser": "big"}, "denoiser='big' must be an object"),
])
def test_non_finite_or_mistyped_options_are_refused_by_name(options, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        TrainConfig.from_dict({"data": "x", **options})


def test_cli_train_with_an_infinite_lr_fails_before_training(tmp_path):
    data, run = _dataset(tmp_path / "data"), tmp_path / "run"
    result = subprocess.run(_cli("train", "--data", str(data), "--out", str(run), "--lr", "inf", "--steps", "2"),
                            env=_env(), capture_output=True, text=True, timeout=240)
    assert result.returncode != 0
    assert "lr=inf" in result.stderr and "Traceback" not in result.stderr
    assert not any(run.glob("**/*.safetensors"))


def test_resume_tolerates_a_metrics_line_cut_by_a_kill(tmp_path):
    data, run = _dataset(tmp_path / "data"), tmp_path / "run"
    train(_cfg(data, run, steps=3))
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "loss": 0.1')  # what a kill -9 mid-write leaves
    train(_cfg(data, run, steps=5), resume=True)
    assert [m["step"] for m in _metrics(run)] == [1, 2, 3, 4, 5]


def test_schedule_matches_diffusers_cosine_and_can_be_shortened():
    from diffusers.optimization import get_cosine_schedule_with_warmup

    from cosyn.training.schedule import CosineWithWarmup

    ref = get_cosine_schedule_with_warmup(torch.optim.SGD([torch.zeros(1)], lr=1.0), 10, 100)
    ours = CosineWithWarmup(10, 100)
    assert [ours(s) for s in range(101)] == pytest.approx([ref.lr_lambdas[0](s) for s in range(101)])
    ours.total = 50
    assert ours(30) == pytest.approx(0.5) and ours(50) == 0 and ours(80) == 0


def test_time_budget_fits_the_steps_left_into_the_time_left():

    now = [1000.0]
    budget = TimeBudget(10, start_step=500, probe=(10, 60), clock=lambda: now[0])  # 600 s, 30 s reserve
    for step in range(501, 561):
        now[0] += 0.5 if step <= 510 else 0.1  # slow start-up steps are left out of the probe
        budget.observe(step)
        assert budget.fitted_total(step, 100_000) is None or step == 560
    assert budget.probe_ends(560) and not budget.probe_ends(561)
    # 10 steps/s over the probe; 600 - 10 s spent - 30 s reserve = 560 s left
    assert budget.fitted_total(560, 100_000) == pytest.approx(560 + 5600, abs=1)
    assert budget.fitted_total(560, 6000) is None  # already fits
    assert not budget.expired()
    now[0] += 600
    assert budget.expired()
    assert not TimeBudget(0, 0).expired() and TimeBudget(0, 0).fitted_total(120, 10) is None


def test_time_limit_fits_the_schedule_into_the_time(tmp_path, monkeypatch):
    """A run given minutes instead of a known speed measures itself, shortens its step count so
    the learning rate reaches 0 in time, records that, and ends with a checkpoint."""
    monkeypatch.setattr(trainer_module, "TimeBudget", clocked_budget(0.01))  # 100 steps/s: 0.6 s fit ~50 steps
    data, run = _dataset(tmp_path / "data"), tmp_path / "run"
    cfg = _cfg(data, run, steps=1_000_000, time_limit=0.01, save_every=1000, log_every=10, warmup=2)
    train(cfg)
    assert cfg.steps == 1_000_000  # the caller's config is left alone
    steps = json.loads((run / "run_config.json").read_text())["train"]["steps"]
    assert 12 < steps < 1_000_000
    assert checkpoint_dirs(run)[-1].name == f"step_{steps:07d}"
    status = json.loads((run / "status.json").read_text())
    assert status["total"] == steps  # what the studio's progress shows
    assert status["state"] == "finished"  # the fitted schedule ended before the deadline
    assert "steps fit, instead of 1000000" in (run / "train.log").read_text()
    rows = _metrics(run)
    assert rows[-1]["step"] == steps and rows[-1]["lr"] == pytest.approx(0, abs=1e-12)


def test_text_cache_trains_without_the_encoder(tmp_path, monkeypatch):
    from cosyn.model.text_cache import all_structure_prompts, write_prompt_cache
    from cosyn.training import setup as setup_module

    data = _dataset(tmp_path / "data")
    cache = write_prompt_cache(text_encoder(), all_structure_prompts(CONSEP, ["colon"]), tmp_path / "p.safetensors")

    def no_encoder(*_args, **_kw):
        raise AssertionError("the text encoder must not be loaded when a prompt cache is given")

    monkeypatch.setattr(setup_module, "TextEncoder", no_encoder)
    run = train(_cfg(data, tmp_path / "run", steps=3, text_cache=str(cache), preview_every=3, val_fraction=0.34))
    assert [m["step"] for m in _metrics(run)] == [1, 2, 3] and list((run / "previews").glob("*.png"))

    partial = write_prompt_cache(text_encoder(), ["", "x"], tmp_path / "partial.safetensors")
    with pytest.raises(TrainingError, match=r"partial.safetensors lacks 769 prompt\(s\) this data can draw"):
        train(_cfg(data, tmp_path / "run2", steps=1, text_cache=str(partial)))
    save_file(load_file(cache), cache, metadata={"prompts": '["x"]', "encoder": "another-encoder", "max_tokens": "48"})
    with pytest.raises(TrainingError, match="another-encoder"):
        train(_cfg(data, tmp_path / "run3", steps=1, text_cache=str(cache)))
    with pytest.raises(TrainingError, match="text_cache: .*missing.safetensors: not a prompt cache"):
        train(_cfg(data, tmp_path / "run4", steps=1, text_cache=str(tmp_path / "missing.safetensors")))


def test_loader_workers_give_the_same_batches():
    from cosyn.data.dataset import CropDataset, PositionSampler, prepare_tile

    tiles = [prepare_tile(disc_sample(n=9, size=(64, 64), name=f"t{i}_000", seed=i), None) for i in range(3)]
    dataset = CropDataset(tiles, CONSEP, 32, 0.25)

    def first(workers: int) -> list[dict]:
        loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=workers, sampler=PositionSampler(5))
        return [b for b, _ in zip(loader, range(3), strict=False)]

    for a, b in zip(first(0), first(2), strict=True):
        assert a["prompt"] == b["prompt"] and torch.equal(a["position"], b["position"])
        assert all(torch.equal(a[k], b[k]) for k in ("image", "class_map", "dist", "points"))


def test_train_hands_the_stop_signals_back(tmp_path):
    data = _dataset(tmp_path / "data")
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    train(_cfg(data, tmp_path / "run", steps=1))
    with pytest.raises(TrainingError):
        train(_cfg(data, tmp_path / "run2", steps=1, text_cache=str(tmp_path / "missing.safetensors")))
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_a_status_left_running_by_a_killed_process_reads_as_crashed(tmp_path):
    from cosyn.training.status import StatusFile, read_status

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its pid names no process now
    path = tmp_path / "status.json"
    StatusFile(path).update(state="running", step=7, pid=gone.pid)
    status = read_status(path)
    assert status["state"] == "crashed" and status["step"] == 7 and str(gone.pid) in status["last_error"]
    StatusFile(path).update(state="running", step=8, pid=os.getpid())
    assert read_status(path)["state"] == "running"
    StatusFile(path).update(state="finished", pid=gone.pid)
    assert read_status(path)["state"] == "finished"  # an ended run needs no living process


def test_one_merge_of_training_options_for_the_cli_and_the_studio(tmp_path):
    from cosyn.studio.jobs import JobSpec
    from cosyn.training.config import merged_config

    # defaults ← a recorded run ← a config file ← flags; None is "not given"
    cfg = merged_config({"steps": 5, "lr": 1e-3}, {"steps": 7, "batch": 3}, {"steps": None, "batch": 4})
    assert (cfg.steps, cfg.lr, cfg.batch, cfg.crop) == (7, 1e-3, 4, TrainConfig.crop)
    # the studio's job: defaults ← the JSON box ← the form's named fields
    assert JobSpec("r", "d", options={"steps": 9, "seed": 2}).train_options(tmp_path)["steps"] == 9
    opts = JobSpec("r", "d", steps=3, options={"steps": 9, "seed": 2}).train_options(tmp_path)
    assert (opts["steps"], opts["seed"], opts["batch"]) == (3, 2, TrainConfig.batch)
