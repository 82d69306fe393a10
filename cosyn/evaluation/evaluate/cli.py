"""`cosyn evaluate`'s arguments, and the command that turns them into an EvalConfig and a report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cosyn.augment import AugmentError
from cosyn.evaluation.c2st import C2STConfig
from cosyn.evaluation.evaluate.config import DEFAULT_SECTIONS, SECTIONS, EvalConfig
from cosyn.evaluation.evaluate.driver import evaluate
from cosyn.model.pipeline import CoSynPipeline
from cosyn.model.ranges import check_numbers, cpu_bounds
from cosyn.model.sampling_args import add_trust_argument
from cosyn.model.settings import SamplingSettings
from cosyn.segmentation import SegTrainConfig
from cosyn.training.config import TrainConfig


def add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="quality report of a checkpoint against a real dataset split")
    p.add_argument("--checkpoint", required=True)
    add_trust_argument(p)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--format", default="auto")
    p.add_argument("--split", default="val", choices=["val", "train", "all"])
    p.add_argument("--val-fraction", type=float, default=TrainConfig.val_fraction)
    p.add_argument("--split-seed", type=int, default=TrainConfig.seed)
    p.add_argument("--n-layouts", type=int, help="evaluate a seeded subset of the split's tiles")
    p.add_argument("--samples-per-layout", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="generation seed base")
    p.add_argument("--steps", type=int, default=SamplingSettings.steps)
    p.add_argument("--guidance", type=float, default=SamplingSettings.guidance)
    p.add_argument("--sampler", default=SamplingSettings.sampler)
    p.add_argument("--sections", help=f"comma-separated subset of {','.join(SECTIONS)} (default: all; "
                                      "downstream only with --synthetic)")
    p.add_argument("--segmenter", help="a trained real segmenter folder to reuse for consistency")
    p.add_argument("--segmenter-steps", type=int, default=SegTrainConfig.steps)
    p.add_argument("--segmenter-batch", type=int, default=SegTrainConfig.batch)
    p.add_argument("--segmenter-crop", type=int, default=SegTrainConfig.crop)
    p.add_argument("--seeds", type=int, default=3, help="downstream training seeds")
    p.add_argument("--synthetic", help="synthetic dataset folder from `cosyn augment` (downstream)")
    p.add_argument("--synthetic-share", type=float, help="fraction of each batch drawn from synthetic tiles "
                                                         "(default: in proportion to tile counts)")
    p.add_argument("--c2st-steps", type=int, default=C2STConfig.steps, help="training steps of each realism judge")
    p.add_argument("--speed-runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.sections:
        sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    else:
        sections = SECTIONS if args.synthetic else DEFAULT_SECTIONS
    try:
        check_numbers(args, {"threads": cpu_bounds()}, "options")
        if args.threads:
            torch.set_num_threads(args.threads)
        train = SegTrainConfig(steps=args.segmenter_steps, batch=args.segmenter_batch, crop=args.segmenter_crop)
        cfg = EvalConfig(
            checkpoint=args.checkpoint, data=args.data, out=args.out, format=args.format, split=args.split,
            val_fraction=args.val_fraction, split_seed=args.split_seed, n_layouts=args.n_layouts,
            samples_per_layout=args.samples_per_layout, seed=args.seed,
            sampling=SamplingSettings(args.steps, args.guidance, args.sampler), sections=sections,
            segmenter=args.segmenter, segmenter_train=train, seeds=args.seeds, synthetic=args.synthetic,
            synthetic_share=args.synthetic_share, c2st=C2STConfig(steps=args.c2st_steps), speed_runs=args.speed_runs,
            device=device,
        )
        pipe = CoSynPipeline.from_pretrained(args.checkpoint, device=device, trust_unverified=args.trust_unverified)
        report = evaluate(cfg, pipe)
    except (ValueError, AugmentError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report["bars"], indent=1))
    print(f"wrote {Path(args.out) / 'report.md'}")
    return 0
