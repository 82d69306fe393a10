"""Training steps/s of the joint denoiser on this machine (the default config of docs/model.md).

    python benchmarks/train_throughput.py --crops 64 128 --batch 8 --repeats 5

Prints the median seconds per step over `repeats` timed steps after 2 warm-up steps, for
fp32 and bf16 autocast, on random data of the real shapes (the data pipeline is not the
bottleneck: tiles are preloaded). Synthetic inputs keep the number about compute alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from cosyn.model.denoiser import DenoiserConfig, JointDenoiser
from cosyn.model.diffusion.categorical import MultinomialDiffusion
from cosyn.model.diffusion.gaussian import DEFAULT_SCHEDULE, training_scheduler
from cosyn.training.config import TrainConfig
from cosyn.training.loss import joint_loss


def time_steps(model, crop: int, batch: int, bf16: bool, repeats: int, device: str) -> float:
    sched = training_scheduler(DEFAULT_SCHEDULE)
    cat = MultinomialDiffusion(sched.alphas_cumprod, model.cfg.num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    cfg = TrainConfig()
    gen = torch.Generator().manual_seed(0)
    batch_data = {
        "image": torch.randint(0, 255, (batch, 3, crop, crop), dtype=torch.uint8),
        "dist": torch.rand(batch, 1, crop, crop),
        "class_map": torch.randint(0, model.cfg.num_classes, (batch, crop, crop)),
        "points": torch.randint(0, model.cfg.num_classes, (batch, crop, crop)) * (torch.rand(batch, crop, crop) < 0.01),
    }
    text, mask = torch.randn(batch, 48, 384), torch.ones(batch, 48, dtype=torch.bool)
    times = []
    for i in range(repeats + 2):
        t0 = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = joint_loss(model, batch_data, text, mask, sched, cat, cfg, gen)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crops", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--widths", default="32,64,128,128")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    widths = tuple(int(w) for w in args.widths.split(","))
    cfg = DenoiserConfig(block_out_channels=widths, attention_levels=(False,) * (len(widths) - 2) + (True, True))
    model = JointDenoiser(cfg).to(args.device)
    rows = []
    for crop in args.crops:
        for bf16 in (False, True):
            s = time_steps(model, crop, args.batch, bf16, args.repeats, args.device)
            rows.append({"crop": crop, "batch": args.batch, "bf16": bf16, "s_per_step": round(s, 3),
                         "params_M": round(model.num_parameters() / 1e6, 2), "device": args.device,
                         "threads": torch.get_num_threads()})
            print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
