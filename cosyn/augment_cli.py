"""`cosyn augment`'s command line: the options of cosyn.augment's AugmentConfig."""

from __future__ import annotations

import argparse
import json
import sys

from cosyn.augment import AugmentConfig, AugmentError, Perturbation, augment
from cosyn.enrichment import parse_request
from cosyn.model.checkpoint import read_pipeline_config
from cosyn.model.ranges import check_numbers, cpu_bounds
from cosyn.model.settings import SamplingSettings
from cosyn.training.config import TrainConfig


def add_augment_parser(sub: argparse._SubParsersAction) -> None:
    from cosyn.model.sampling_args import add_sampling_arguments, add_trust_argument

    p = sub.add_parser("augment", help="synthetic dataset from real layouts (resumable; shards under torchrun)")
    p.add_argument("--checkpoint", required=True)
    add_trust_argument(p)
    p.add_argument("--data", required=True, help="real dataset whose layouts are used")
    # --tiles: torchrun's parser reads any --n in the script's arguments as an ambiguous abbreviation of its own
    # options (--nnodes, --nproc-per-node, ...) and stops, so under torchrun spell it --tiles.
    p.add_argument("--n", "--tiles", dest="n", type=int, required=True, help="number of synthetic tiles")
    p.add_argument("--out", required=True)
    p.add_argument("--format", default="auto")
    p.add_argument("--split", default="train", choices=["train", "val", "all"],
                   help="which real tiles give layouts (split by source as `train` splits)")
    p.add_argument("--val-fraction", type=float, default=TrainConfig.val_fraction)
    p.add_argument("--split-seed", type=int, default=TrainConfig.seed)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--random-layouts", action="store_true", help="layouts drawn from the dataset's statistics")
    p.add_argument("--no-dihedral", action="store_true")
    p.add_argument("--jitter-um", type=float, default=0.5)
    p.add_argument("--density", type=float, default=0.25, help="density factor drawn from [1-d, 1+d]")
    p.add_argument("--enrich", metavar="CLASS=FACTOR[,...]",
                   help="about FACTOR (1-10) times as many nuclei of each named class in every layout, "
                        "e.g. inflammatory=2,other=3")
    p.add_argument("--match-stain", action="store_true",
                   help="each tile in the stain of its layout's source slide, measured on that slide's tiles in --data")
    add_sampling_arguments(p)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads per process (0 = torch default)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import torch

    check_numbers(args, {"threads": cpu_bounds()}, "options")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = AugmentConfig(
        checkpoint=args.checkpoint, data=args.data, out=args.out, n=args.n, format=args.format, split=args.split,
        val_fraction=args.val_fraction, split_seed=args.split_seed, seed=args.seed,
        random_layouts=args.random_layouts,
        perturbation=Perturbation(not args.no_dihedral, args.jitter_um, args.density),
        sampling=SamplingSettings(args.steps, args.guidance, args.sampler, refine=not args.no_refine),
        # checked against the checkpoint's classes before minutes of loading and sampling
        enrich=parse_request(args.enrich, read_pipeline_config(args.checkpoint).classes),
        match_stain=args.match_stain,
    )
    try:
        stats = augment(cfg, trust_unverified=args.trust_unverified)
    except AugmentError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(stats))
    return 0
