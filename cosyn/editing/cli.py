"""`cosyn edit`: a real tile + its annotation (HoVer-Net .mat, QuPath GeoJSON, or instance and class
maps) + the edited layout → one export bundle."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from cosyn.core.layout import Layout
from cosyn.editing.annotation import ANNOTATION_HELP
from cosyn.editing.edit import EditError, edit_tile

if TYPE_CHECKING:
    from cosyn.model.settings import SamplingSettings


def add_edit_parser(sub: argparse._SubParsersAction) -> None:
    from cosyn.model.sampling_args import add_sampling_arguments, add_trust_argument

    ed = sub.add_parser("edit", help="edit a real tile: regenerate only around added, removed, moved or "
                                     "reclassified nuclei")
    ed.add_argument("--checkpoint", required=True)
    add_trust_argument(ed)
    ed.add_argument("--image", required=True, help="the real tile (PNG/JPEG/TIFF)")
    ed.add_argument("--annotation", required=True, nargs="+", metavar="ANN", help=f"its annotation: {ANNOTATION_HELP}")
    ed.add_argument("--layout", required=True,
                    help="the full edited layout (layout JSON), at the image's size and µm/px")
    ed.add_argument("--out", required=True, help="the bundle folder to write")
    ed.add_argument("--mask", help="PNG of the image's size: non-zero pixels are regenerated (default: a margin "
                                   "around the changed centroids)")
    ed.add_argument("--seed", type=int, default=0)
    add_sampling_arguments(ed)
    ed.add_argument("--overwrite", action="store_true", help="replace an existing --out bundle")
    ed.set_defaults(func=run_edit)


def run_edit(args: argparse.Namespace) -> int:
    from cosyn.io.fileio import output_folder
    from cosyn.io.guards import refuse_overlap
    from cosyn.model.settings import SamplingSettings

    settings = SamplingSettings(args.steps, args.guidance, args.sampler, args.seed, 1, refine=not args.no_refine)
    out = Path(args.out)
    for source in (args.checkpoint, args.image, *args.annotation, args.layout, *([args.mask] if args.mask else [])):
        refuse_overlap(source, out, "--out")  # --overwrite replaces the bundle folder whole
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it, or choose another --out")
    with output_folder(out.parent, depth=1):  # writable; a refused edit leaves no empty folder, a rerun no temp files
        return _edit_checked(args, settings, out)


def _edit_checked(args: argparse.Namespace, settings: SamplingSettings, out: Path) -> int:
    """`run_edit` once its options passed and --out's folder is writable."""
    from cosyn.editing.annotation import read_annotated_tile
    from cosyn.io.export import write_bundle
    from cosyn.model.pipeline import CoSynPipeline

    edited = Layout.load(args.layout)
    pipe = CoSynPipeline.from_pretrained(args.checkpoint, trust_unverified=args.trust_unverified)
    tile = read_annotated_tile(args.image, args.annotation, pipe.class_set, edited.mpp, edited.tissue)
    mask = None
    if args.mask:
        try:
            mask = np.asarray(Image.open(args.mask).convert("L")) > 0
        except OSError as e:
            raise EditError(f"{args.mask}: not a readable image ({e})") from None
    triple = edit_tile(pipe, tile, edited, mask, settings)
    triple.params["edit"] |= {"image": str(args.image), "annotation": [str(a) for a in args.annotation],
                              "mask": str(args.mask) if args.mask else "margin around the changed centroids"}
    write_bundle(triple, out, overwrite=args.overwrite)
    e = triple.params["edit"]
    print(f"{out}: regenerated {e['region_pixels']} px; kept {e['kept_instances']} of the tile's nuclei, "
          f"added {e['new_instances']} ({' + '.join(triple.params['stages'])})")
    return 0
