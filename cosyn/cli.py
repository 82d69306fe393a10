"""`python -m cosyn <command>`: prepare, train, export-checkpoint, prompt-cache, sample, augment, evaluate, edit."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cosyn.core.layout import LayoutError
from cosyn.model.sampling_args import add_sampling_arguments, add_trust_argument

if TYPE_CHECKING:
    from cosyn.model.settings import SamplingSettings


def _prepare(args: argparse.Namespace) -> int:
    from cosyn.data.prepare import prepare

    report = prepare(args.src, args.out, fmt=args.format, overwrite=args.overwrite, mpp=args.mpp)
    print(report.to_markdown())
    print(f"wrote {args.out} (report: {Path(args.out) / 'report.md'})")
    return 0


def _train(args: argparse.Namespace) -> int:
    from cosyn.training.config import TrainingError, merged_config, read_options
    from cosyn.training.trainer import train

    def checked(path: Path | str, key: str | None = None) -> dict:
        """The options in `path` (under `key`), valid on their own: a bad value is named with its file."""
        opts = read_options(path)  # an unreadable file: an error naming it
        opts = opts.get(key) if key else opts
        if not isinstance(opts, dict):
            raise TrainingError(f"train: {path}: no {key!r} object of training options")
        try:
            merged_config(opts)
        except ValueError as e:
            raise TrainingError(f"train: {path}{f' [{key!r}]' if key else ''}: {e}") from None
        return opts

    saved = Path(args.out or "") / "run_config.json"
    # a resume continues the run as configured; only what is given again on this command line changes
    recorded = checked(saved, "train") if args.resume and args.out and saved.is_file() else None
    given = checked(args.config) if args.config else None
    flags = {key: getattr(args, key) for key in TRAIN_FLAGS}
    try:
        cfg = merged_config(recorded, given, flags, {"bf16": False} if args.fp32 else None)
    except ValueError as e:
        raise TrainingError(f"train: {e}") from None
    if not cfg.data:
        raise TrainingError("train: --data is required (or --resume an existing --out run)")
    run = train(cfg, resume=args.resume, overwrite=args.overwrite)
    print(f"run folder: {run}")
    return 0


TRAIN_FLAGS = ("data", "out", "init", "steps", "batch", "lr", "crop", "mpp", "threads", "format", "seed",
               "save_every", "preview_every")


def _export(args: argparse.Namespace) -> int:
    import torch

    from cosyn.training.checkpoints import export_checkpoint

    out = export_checkpoint(args.run, args.out, dtype=torch.float32 if args.fp32 else torch.float16,
                            overwrite=args.overwrite, second_stage=args.second_stage)
    print(f"exported {out}")
    return 0


def _prompt_cache(args: argparse.Namespace) -> int:
    from cosyn.core.classes import ClassSet
    from cosyn.io.fileio import output_folder
    from cosyn.model.checkpoint import read_pipeline_config
    from cosyn.model.text import TextEncoder
    from cosyn.model.text_cache import all_structure_prompts, write_prompt_cache

    config = read_pipeline_config(args.checkpoint)
    prompts = all_structure_prompts(ClassSet(tuple(config.classes)), config.tissues)
    with output_folder(Path(args.out).parent, depth=1):  # a read-only or full disk is said before the encoding
        path = write_prompt_cache(TextEncoder(config.text_encoder), prompts, args.out)
    print(f"wrote {len(prompts)} prompt embeddings to {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from cosyn.io.export import check_formats
    from cosyn.io.fileio import output_folder
    from cosyn.io.guards import refuse_overlap
    from cosyn.model.settings import SamplingSettings

    # everything that can be checked before minutes of sampling is checked first
    settings = SamplingSettings(args.steps, args.guidance, args.sampler, args.seed, args.n, refine=not args.no_refine)
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    check_formats(formats)
    out = Path(args.out)
    folders = [out / f"{i:03d}" for i in range(settings.n)]
    for folder in folders:  # --overwrite replaces each bundle folder whole: none may hold an input
        refuse_overlap(args.layout, folder, "--out")
        refuse_overlap(args.checkpoint, folder, "--out")
    taken = [f for f in folders if f.exists()]
    if taken and not args.overwrite:
        raise FileExistsError(f"{taken[0]} exists; pass --overwrite to replace it, or choose another --out")
    with output_folder(out):  # writable; a refused or failed run leaves no empty --out behind, a rerun no temp files
        return _sample_checked(args, settings, formats, folders)


def _sample_checked(args: argparse.Namespace, settings: SamplingSettings, formats: tuple[str, ...],
                    folders: list[Path]) -> int:
    """`_sample` once its options passed and --out is writable: load, sample, write the bundles."""
    from tqdm import tqdm

    from cosyn.core.layout import Layout
    from cosyn.core.resample import at_mpp
    from cosyn.enrichment import enrich, parse_request, record_in
    from cosyn.io.export import write_bundle
    from cosyn.model.checkpoint import read_pipeline_config
    from cosyn.model.pipeline import CoSynPipeline, crowding_warnings
    from cosyn.stages.texture.stain import Stain

    layout = Layout.load(args.layout)
    stain = Stain.of_files(args.stain_reference) if args.stain_reference else None
    config = read_pipeline_config(args.checkpoint)
    factors = parse_request(args.enrich, config.classes)
    layout, enrichment = enrich(layout, factors, settings.seed, config.mpp) if factors else (layout, None)
    pipe = CoSynPipeline.from_pretrained(args.checkpoint, trust_unverified=args.trust_unverified)
    for warning in crowding_warnings(pipe.conform_layout(layout)):
        print(f"warning: {args.layout}: {warning}", file=sys.stderr)
    with tqdm(total=settings.steps, desc="sampling", unit="step") as bar:
        def on_step(p) -> None:
            bar.n = p.step
            bar.refresh()
        triples = pipe.sample(layout, args.prompt, settings, on_step=on_step, stain=stain)
    record_in(triples, enrichment)
    for folder, tr in zip(folders, triples, strict=True):
        if args.output_mpp:
            tr = at_mpp(tr, args.output_mpp)
        write_bundle(tr, folder, formats=formats, overwrite=args.overwrite)
        missed = tr.params["missed_centroids"]
        print(f"{folder}: {len(tr.inst_classes)} instances, {missed} of {tr.params['centroids']} centroids missed "
              f"({' + '.join(tr.params['stages'])} at {tr.layout.mpp:g} µm/px)")
    return 0


def _checksum(args: argparse.Namespace) -> int:
    from cosyn.model.checkpoint import record_checksums

    for path, done in record_checksums(args.checkpoint).items():
        print(f"{path}: {done}")
    return 0


def _positive(cast: type[int] | type[float]) -> Callable[[str], int | float]:
    """An argparse type: `cast(text)`, refused unless above 0."""
    def parse(text: str) -> int | float:
        value = cast(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value
    return parse


HEAVY_COMMANDS = {
    "augment": ("cosyn.augment_cli", "add_augment_parser",
                "synthetic dataset from real layouts (resumable; shards under torchrun)"),
    "evaluate": ("cosyn.evaluation.evaluate", "add_evaluate_parser",
                 "quality report of a checkpoint against a real dataset split"),
    "edit": ("cosyn.editing.cli", "add_edit_parser",
             "edit a real tile: regenerate only around added, removed, moved or reclassified nuclei"),
}


Subparsers = argparse._SubParsersAction  # what add_subparsers returns


def _add_prepare(sub: Subparsers) -> None:
    pr = sub.add_parser("prepare", help="normalise a dataset and write a validation report")
    pr.add_argument("src")
    pr.add_argument("--format", default="auto", choices=["auto", "consep", "hovernet", "pannuke", "conic", "folder"])
    pr.add_argument("--out", required=True)
    pr.add_argument("--overwrite", action="store_true")
    pr.add_argument("--mpp", type=float, help="resample every sample to this µm/px while writing")
    pr.set_defaults(func=_prepare)


def _add_train(sub: Subparsers) -> None:
    tr = sub.add_parser("train", help="train from scratch, fine-tune (--init) or --resume")
    tr.add_argument("--data")
    tr.add_argument("--out")
    tr.add_argument("--init")
    tr.add_argument("--steps", type=int)
    tr.add_argument("--batch", type=int)
    tr.add_argument("--lr", type=float)
    tr.add_argument("--crop", type=int)
    tr.add_argument("--mpp", type=float)
    tr.add_argument("--threads", type=int, help="torch CPU threads (0 = torch default)")
    tr.add_argument("--format")
    tr.add_argument("--seed", type=int)
    tr.add_argument("--save-every", dest="save_every", type=int)
    tr.add_argument("--preview-every", dest="preview_every", type=int)
    tr.add_argument("--config", help="JSON file of TrainConfig options; flags override it")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    tr.add_argument("--overwrite", action="store_true",
                    help="delete the run already in --out (checkpoints, metrics, status, previews) and start again")
    tr.add_argument("--fp32", action="store_true", help="disable bf16 autocast")
    tr.set_defaults(func=_train)


def _add_export(sub: Subparsers) -> None:
    ex = sub.add_parser("export-checkpoint", help="write a loadable checkpoint folder from a run")
    ex.add_argument("run")
    ex.add_argument("--out", required=True)
    ex.add_argument("--fp32", action="store_true", help="store float32 weights (default float16)")
    ex.add_argument("--overwrite", action="store_true",
                    help="replace an existing --out folder whole (its weights, model card and evaluation)")
    ex.add_argument("--second-stage", choices=("texture", "upsampler"), default="texture",
                    help="texture: real tissue from a bank of the run's training split (built on first export); "
                         "upsampler: bicubic + unsharp mask, no bank")
    ex.set_defaults(func=_export)


def _add_prompt_cache(sub: Subparsers) -> None:
    pc = sub.add_parser("prompt-cache", help="encode every structure prompt of a model once, for training "
                        "where the text-encoder package is not installed (train with text_cache)")
    pc.add_argument("--checkpoint", required=True, help="model folder whose classes, tissues and encoder to use")
    pc.add_argument("--out", required=True, help="safetensors file to write")
    pc.set_defaults(func=_prompt_cache)


def _add_checksum(sub: Subparsers) -> None:
    cs = sub.add_parser("checksum", help="record the sha256 of a checkpoint's weight files you trust (in its "
                        "checksums.json), so it loads without --trust-unverified")
    cs.add_argument("checkpoint", help="checkpoint folder (config.json, model.safetensors, second_stage/)")
    cs.set_defaults(func=_checksum)


def _add_sample(sub: Subparsers) -> None:
    sa = sub.add_parser("sample", help="layout JSON → export bundles")
    sa.add_argument("--checkpoint", required=True)
    add_trust_argument(sa)
    sa.add_argument("--layout", required=True)
    sa.add_argument("--prompt")
    add_sampling_arguments(sa)
    sa.add_argument("--seed", type=int, default=0)
    sa.add_argument("--n", type=int, default=1)
    sa.add_argument("--out", required=True)
    sa.add_argument("--overwrite", action="store_true", help="replace bundles already in --out")
    sa.add_argument("--output-mpp", dest="output_mpp", type=_positive(float),
                    help="write the bundles at this µm/px (default: the sampled triple's); label maps resample "
                         "nearest")
    sa.add_argument("--formats", default="png,npy,mat,geojson,coco")
    sa.add_argument("--enrich", metavar="CLASS=FACTOR[,...]",
                    help="enrich the layout before sampling: about FACTOR (1-10) times as many nuclei of each "
                         "named class, drawn from --seed (e.g. inflammatory=2)")
    sa.add_argument("--stain-reference", nargs="+", metavar="IMAGE",
                    help="make the tiles in the stain of these H&E images (your own slides'), not the texture "
                         "bank's; needs the texture stage")
    sa.set_defaults(func=_sample)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cosyn", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_add_prepare, _add_train, _add_export, _add_prompt_cache, _add_sample, _add_checksum):
        add(sub)
    # augment and evaluate import torch and diffusers to build their parsers: only pay for that when one
    # of them is the command (`cosyn --help` stays instant; `cosyn augment --help` shows every option).
    chosen = next((a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")), None)
    for name, (module, adder, summary) in HEAVY_COMMANDS.items():
        if name == chosen:
            getattr(importlib.import_module(module), adder)(sub)
        else:
            sub.add_parser(name, help=summary)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    from cosyn.data.sample import DataError
    from cosyn.io.fileio import in_words
    from cosyn.model.checkpoint import CheckpointError
    from cosyn.training.config import TrainingError

    try:
        return args.func(args)
    except (DataError, LayoutError, CheckpointError, TrainingError, OSError, ValueError) as e:
        # OSError names the file (missing, unreadable; a full or read-only disk in words); ValueError covers a
        # bad --config JSON
        print(f"error: {in_words(e) if isinstance(e, OSError) else e}", file=sys.stderr)
        return 2
