"""The command-line face of SamplingSettings, shared by `cosyn sample`, `cosyn augment` and `cosyn edit`.

Only argparse here: building a parser must not import torch or diffusers (`cosyn --help` stays instant).
"""

from __future__ import annotations

import argparse


def add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    """--steps, --guidance, --sampler and --no-refine: SamplingSettings' fields, checked by it (not here) so
    that the command line refuses what the pipeline and the studio refuse, with the same message."""
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=2.0)
    p.add_argument("--sampler", default="dpm++", help="ddim, dpm++ or unipc")
    p.add_argument("--no-refine", dest="no_refine", action="store_true",
                   help="skip the second stage (the checkpoint's, by default the Upsampler: bicubic and sharpened): "
                        "triples stay at the base model's µm/px")


def add_trust_argument(p: argparse.ArgumentParser) -> None:
    """--trust-unverified, for every command that loads a checkpoint (CoSynPipeline.from_pretrained's
    `trust_unverified`): without it, weights with no sha256 recorded in checksums.json are refused."""
    p.add_argument("--trust-unverified", dest="trust_unverified", action="store_true",
                   help="load a checkpoint whose weights have no checksum recorded (`cosyn checksum FOLDER` records "
                        "one); damaged or replaced weights then go unnoticed")
