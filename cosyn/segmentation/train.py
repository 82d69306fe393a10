"""The training loop: AdamW with warm-up and cosine decay, MONAI's HoVerNetLoss, bf16 autocast.

Resumable: given a folder, every `save_every` steps it writes the weights and AdamW's moments
(progress.safetensors) beside the step reached, the settings and the loss curve (progress.json).
Batch `s` is drawn from a generator seeded by (seed, s) alone, so a resumed run sees the batches
an uninterrupted one would have; the finished segmenter is saved there and the progress files
are removed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.apps.pathology.losses import HoVerNetLoss
from safetensors.torch import load_file
from tqdm import tqdm

from cosyn.io.fileio import atomic_write
from cosyn.segmentation.config import SegmenterConfig, SegTrainConfig
from cosyn.segmentation.model import branches
from cosyn.segmentation.segmenter import Segmenter, load_weights, save_weights
from cosyn.segmentation.targets import SegTile, random_batch

PROGRESS_JSON = "progress.json"
PROGRESS_WEIGHTS = "progress.safetensors"
_OPT_PREFIX = "optimizer."


def lr_factor(step: int, cfg: SegTrainConfig) -> float:
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    return {f"{_OPT_PREFIX}{i}.{k}": v.detach().cpu().contiguous().reshape(v.shape)
            for i, st in opt.state_dict()["state"].items() for k, v in st.items()}


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        i, name = key[len(_OPT_PREFIX):].split(".", 1)
        state.setdefault(int(i), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})


def _save_progress(folder: Path, seg: Segmenter, opt: torch.optim.Optimizer, info: dict[str, Any]) -> None:
    save_weights(seg.net, folder / PROGRESS_WEIGHTS, _optimizer_tensors(opt))
    atomic_write(folder / PROGRESS_JSON, lambda p: Path(p).write_text(json.dumps(info)))


def _resume(folder: Path, seg: Segmenter, opt: torch.optim.Optimizer, settings: dict[str, Any]) -> dict[str, Any]:
    """The saved progress when it was made with `settings`; a fresh start when there is none."""
    path = folder / PROGRESS_JSON
    if not path.is_file() or not (folder / PROGRESS_WEIGHTS).is_file():
        return {"step": 0, "losses": [], "seconds": 0.0, "settings": settings}
    info = json.loads(path.read_text())
    if info.get("settings") != settings:
        raise ValueError(f"{path}: an unfinished run with other settings ({info.get('settings')}); "
                         f"remove {folder} to start over")
    tensors = load_file(folder / PROGRESS_WEIGHTS)
    net_state = {k: v for k, v in tensors.items() if not k.startswith(_OPT_PREFIX)}
    load_weights(seg.net, net_state, folder / PROGRESS_WEIGHTS)
    _load_optimizer(opt, {k: v for k, v in tensors.items() if k.startswith(_OPT_PREFIX)})
    return info


def train_segmenter(
    tiles: Sequence[SegTile],
    config: SegmenterConfig,
    train: SegTrainConfig,
    weights: Sequence[float] | None = None,
    folder: str | Path | None = None,
    progress: bool = True,
    desc: str = "segmenter",
    device: str = "cpu",
    data_key: str = "",
) -> Segmenter:
    """Train a new segmenter on `tiles` (at `config.mpp`); `weights` are per-tile sampling weights.

    With `folder`, training resumes from and checkpoints into it, and the result is saved there.
    `data_key` names the training data, so a resume on other data is refused. The returned
    segmenter stays on `device`."""
    if not tiles:
        raise ValueError("no tiles to train the segmenter on")
    seg = Segmenter.new(config, train.seed)
    p = None if weights is None else np.asarray(weights, np.float64) / np.sum(weights)
    net = seg.net.to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    criterion = HoVerNetLoss()
    settings = {"config": config.to_dict(), "train": asdict(train), "tiles": len(tiles), "data": data_key}
    out = Path(folder) if folder is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    info = _resume(out, seg, opt, settings) if out is not None else {"step": 0, "losses": [], "seconds": 0.0}
    start = int(info["step"])
    t0 = time.perf_counter() - float(info["seconds"])
    bar = tqdm(range(start, train.steps), desc=desc, unit="step", disable=not progress, initial=start,
               total=train.steps, leave=False)
    for step in bar:
        rng = np.random.default_rng([train.seed, 1, step])
        images, targets = random_batch(tiles, rng, train.crop, train.batch, config.num_classes, p,
                                       train.colour_jitter)
        for g in opt.param_groups:
            g["lr"] = train.lr * lr_factor(step, train)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=train.bf16):
            raw = net(images.to(device))
        pred = branches(raw.float(), config.num_classes)
        loss = criterion(pred, {k: v.to(device) for k, v in targets.items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        info["losses"].append(round(float(loss.item()), 5))
        done = step + 1
        if out is not None and done % train.save_every == 0 and done < train.steps:
            _save_progress(out, seg, opt, {**info, "step": done, "seconds": time.perf_counter() - t0})
    net.eval()
    losses = info["losses"]
    seg.train_info = {**asdict(train), "tiles": len(tiles), "data": data_key,
                      "final_loss": float(np.mean(losses[-max(1, len(losses) // 10):])),
                      "loss_per_100_steps": [round(float(np.mean(losses[i:i + 100])), 4)
                                             for i in range(0, len(losses), 100)],
                      "seconds": round(time.perf_counter() - t0, 1)}
    if out is not None:
        seg.save(out)
        for name in (PROGRESS_WEIGHTS, PROGRESS_JSON):
            (out / name).unlink(missing_ok=True)
    return seg
