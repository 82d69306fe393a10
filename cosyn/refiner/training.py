"""Refiner training: real tiles, degraded base-resolution inputs, resumable, one screen of loop.

`gan`: L1 on the 4×-pooled image (colour and layout follow the input) + a light full-resolution L1
+ hinge PatchGAN + discriminator feature matching (pix2pixHD), so texture comes from the adversary
rather than from the blurry pixel mean.
`diffusion`: the residual (target − upsampled input) as a v-prediction diffusion on a cosine
schedule, sampled in a few DDIM steps (SR3 / Imagen super-resolution, small).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cosyn.data.dataset import split_by_source
from cosyn.data.formats import read_dataset
from cosyn.io.fileio import atomic_dir, dataclass_from_dict
from cosyn.io.state_io import load_state, save_state
from cosyn.refiner.data import Degradation, RefinerTile, batch_tensors, crop_pair, refiner_tile
from cosyn.refiner.network import PatchDiscriminator, RefinerConfig, RefinerNet, conditioning, hinge_d
from cosyn.refiner.stage import RESIDUAL_SCALE, Refiner, RefinerError, save_refiner


@dataclass
class RefinerTrainConfig:
    data: str
    out: str
    formulation: str = "gan"
    steps: int = 3000
    batch: int = 6
    crop: int = 128
    lr: float = 2e-4
    lr_d: float = 2e-4
    base_mpp: float = 0.5
    scale: int = 2
    widths: tuple[int, ...] = (32, 64, 96)
    residual_highpass: float = 0.0  # RefinerConfig's: > 0 keeps the refiner to detail finer than this σ
    w_lowpass: float = 10.0
    lowpass_pool: int = 4  # the colour/layout loss compares (pool × pool)-averaged images
    w_l1: float = 1.0
    w_adv: float = 1.0
    w_fm: float = 5.0
    ema: float = 0.999
    blur: float = 1.0  # degradation of the input: Gaussian blur up to this sigma (base px)
    blur_min: float = 0.0  # ... and at least this one
    noise: float = 0.02  # ... pixel noise up to this std (of the [0, 1] range)
    gain: float = 0.07  # ... per-channel stain gain within 1 ± gain
    val_fraction: float = 0.15  # the base model's split: evaluation tiles stay unseen
    seed: int = 0
    save_every: int = 200
    time_limit: float | None = None  # minutes
    stop_after: int | None = None  # steps in this invocation; the schedule still spans `steps`
    threads: int | None = None
    bf16: bool = True

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)
        for k in ("lr", "lr_d", "w_lowpass", "w_l1", "w_adv", "w_fm", "ema", "base_mpp", "blur", "blur_min",
                  "noise", "gain"):
            v = float(getattr(self, k))
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"{k}={v} must be a finite number >= 0")
        if self.crop % (self.scale * 4):
            raise ValueError(f"crop {self.crop} must be a multiple of {self.scale * 4}")

    @classmethod
    def from_dict(cls, d: dict) -> RefinerTrainConfig:
        return dataclass_from_dict(cls, d, "refiner training keys")


def load_tiles(cfg: RefinerTrainConfig) -> tuple[list[RefinerTile], int, list[str]]:
    """The training split's tiles as refiner pairs; tiles coarser than the refiner's output are refused
    (targets upsampled from them would teach it to blur)."""
    samples = read_dataset(cfg.data)
    output_mpp = cfg.base_mpp / cfg.scale
    train_idx, _ = split_by_source(samples, cfg.val_fraction, cfg.seed)
    tiles = []
    for i in train_idx:
        s = samples[i]
        if s.mpp is not None and s.mpp > output_mpp * 1.01:
            raise RefinerError(f"{cfg.data}: tile {s.name} is at {s.mpp:g} µm/px, coarser than the refiner's "
                               f"output of {output_mpp:g} µm/px; train it on the data at its native resolution")
        tiles.append(refiner_tile(s, cfg.base_mpp, cfg.scale))
    return tiles, len(samples[0].classes.names), list(samples[0].classes.names)


def gan_step(g: RefinerNet, d: PatchDiscriminator, opt_g, opt_d, b: dict, cfg: RefinerTrainConfig,
             gen: torch.Generator) -> dict[str, float]:
    cond = conditioning(b["image_up"], b["dist_up"], b["probs"], b["points"], g.cfg, gen)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16)
    with autocast:
        fake = b["image_up"] + g(cond).float()
        d_real = d(b["target"], b["dist_up"], b["probs"])
        d_fake = d(fake.detach(), b["dist_up"], b["probs"])
        loss_d = hinge_d(d_real[-1].float(), d_fake[-1].float())
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    with autocast:
        feats = d(fake, b["dist_up"], b["probs"])
        adv = -feats[-1].float().mean()
        fm = sum(F.l1_loss(f.float(), r.detach().float()) for f, r in zip(feats[:-1], d_real[:-1], strict=True))
    lowpass = F.l1_loss(F.avg_pool2d(fake, cfg.lowpass_pool), F.avg_pool2d(b["target"], cfg.lowpass_pool))
    l1 = F.l1_loss(fake, b["target"])
    loss_g = cfg.w_lowpass * lowpass + cfg.w_l1 * l1 + cfg.w_adv * adv + cfg.w_fm * fm
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    return {"d": loss_d.item(), "adv": adv.item(), "fm": float(fm.detach()), "lowpass": lowpass.item(), "l1": l1.item()}


def diffusion_step(g: RefinerNet, opt_g, b: dict, cfg: RefinerTrainConfig, gen: torch.Generator) -> dict[str, float]:
    residual = (b["target"] - b["image_up"]) / RESIDUAL_SCALE
    n = residual.shape[0]
    t = torch.rand(n, generator=gen)[:, None, None, None]
    alpha, sigma = torch.cos(t * math.pi / 2), torch.sin(t * math.pi / 2)
    eps = torch.randn(residual.shape, generator=gen)
    x_t = alpha * residual + sigma * eps
    cond = conditioning(b["image_up"], b["dist_up"], b["probs"], b["points"], g.cfg, gen)
    cond = torch.cat([cond, x_t, t.expand(n, 1, *x_t.shape[2:])], 1)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
        v_hat = g(cond).float()
    loss = F.mse_loss(v_hat, alpha * eps - sigma * residual)
    opt_g.zero_grad(set_to_none=True)
    loss.backward()
    opt_g.step()
    return {"v_mse": loss.item()}


@dataclass
class _Nets:
    """What a refiner run trains and saves: generator, discriminator, EMA and both optimisers."""

    g: RefinerNet
    d: PatchDiscriminator
    ema: RefinerNet
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer

    @classmethod
    def build(cls, cfg: RefinerTrainConfig, k: int) -> _Nets:
        rcfg = RefinerConfig(num_classes=k, widths=cfg.widths, scale=cfg.scale, formulation=cfg.formulation,
                             residual_highpass=cfg.residual_highpass)
        torch.manual_seed(cfg.seed)
        g, d = RefinerNet(rcfg), PatchDiscriminator(k)
        ema = RefinerNet(rcfg).requires_grad_(False)
        ema.load_state_dict(g.state_dict())
        return cls(g, d, ema, torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=(0.5, 0.99)),
                   torch.optim.Adam(d.parameters(), lr=cfg.lr_d, betas=(0.5, 0.99)))

    def parts(self) -> dict[str, Any]:
        return {"g": self.g, "d": self.d, "ema": self.ema, "opt_g": self.opt_g, "opt_d": self.opt_d}

    def resume(self, state_path: Path) -> int:
        """Load the saved state; the step it was saved at."""
        s = load_state(state_path)
        for key, obj in self.parts().items():
            obj.load_state_dict(s[key])
        return int(s["step"])

    def save(self, out: Path, step: int, steps: int, class_names: list[str], base_mpp: float) -> None:
        with atomic_dir(out / "state") as tmp:
            save_state({**{k: v.state_dict() for k, v in self.parts().items()}, "step": step, "steps": steps},
                       tmp / "train")
        save_refiner(Refiner(self.ema, class_names, base_mpp), out / "refiner")


def train_refiner(cfg: RefinerTrainConfig, progress: Callable[[int, int], None] | None = None) -> Path:
    """Train or resume the refiner run `cfg.out`; its refiner folder. `progress(step, steps)` hears of
    every 25th step."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    tiles, k, class_names = load_tiles(cfg)
    nets = _Nets.build(cfg, k)
    start, steps = 0, cfg.steps
    if (out / "state" / "train.json").is_file():
        start = nets.resume(out / "state" / "train")
        print(f"resumed at step {start} of {steps}", flush=True)
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1))
    degradation = Degradation(blur_sigma=cfg.blur, blur_min=cfg.blur_min, noise=cfg.noise, gain=cfg.gain)
    deadline = None if cfg.time_limit is None else time.monotonic() + 60 * cfg.time_limit
    t0, step = time.monotonic(), start
    while step < steps:
        rng = np.random.default_rng([cfg.seed, step])
        items = [crop_pair(tiles[int(rng.integers(len(tiles)))], cfg.crop, cfg.scale, rng, degradation)
                 for _ in range(cfg.batch)]
        b = batch_tensors(items, k, cfg.scale)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        lr_scale = max(0.5 * (1 + math.cos(math.pi * step / steps)), 0.1)
        for opt, lr in ((nets.opt_g, cfg.lr), (nets.opt_d, cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr * lr_scale
        if cfg.formulation == "gan":
            logs = gan_step(nets.g, nets.d, nets.opt_g, nets.opt_d, b, cfg, gen)
        else:
            logs = diffusion_step(nets.g, nets.opt_g, b, cfg, gen)
        with torch.no_grad():
            for pe, pg in zip(nets.ema.parameters(), nets.g.parameters(), strict=True):
                pe.lerp_(pg, 1 - cfg.ema)
        step += 1
        if not all(math.isfinite(v) for v in logs.values()):
            raise FloatingPointError(f"step {step}: non-finite loss {logs}; the last saved state is kept")
        if progress is not None and (step % 25 == 0 or step == steps):
            progress(step, steps)
        if step % 25 == 0 or step == steps:
            rate = (time.monotonic() - t0) / (step - start)
            print(f"step {step}/{steps} " + " ".join(f"{a} {v:.4f}" for a, v in logs.items())
                  + f" {rate:.2f}s/step", flush=True)
        out_of_time = deadline is not None and time.monotonic() > deadline
        stopping = out_of_time or (cfg.stop_after is not None and step - start >= cfg.stop_after)
        if step % cfg.save_every == 0 or step == steps or stopping:
            nets.save(out, step, steps, class_names, cfg.base_mpp)
        if stopping:
            print(f"stopped at step {step} of {steps}; --resume by running the same config again", flush=True)
            break
    return out / "refiner"
