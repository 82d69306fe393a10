"""`cosyn augment`: a synthetic dataset, in the folder format `prepare` writes.

Tiles come at the real tiles' mpp when those are finer than the model (the checkpoint's second stage's
output), unless `--no-refine`; otherwise at the model's mpp.

Layouts come from the real tiles of a dataset (the training split by default, so a synthetic set
never carries validation layouts into training), perturbed per tile:
- one of the 8 dihedral flips / rotations;
- Gaussian jitter of every centroid (`jitter_um`);
- class-preserving density resampling: each class keeps round(f · n_class) of its points, f drawn
  from [1 - density, 1 + density]; new points sit beside a random point of their own class (so
  glands stay epithelial and infiltrates inflammatory) at least the dataset's typical
  nucleus spacing from every other point.
Or, with `random_layouts`, layouts drawn from the dataset's statistics: the per-class counts of a
random real tile, placed uniformly with the same minimum spacing (no spatial clustering).
With `enrich` ({class: factor}, `--enrich inflammatory=2,other=3`), each layout is then enriched
(cosyn.core.enrich): about factor × as many nuclei of each named class, drawn from a stream of its own
per job, so the perturbations and sampling seeds stay those of the same run without enrichment.
With `match_stain` (`--match-stain`) every tile takes the stain of its layout's source slide, measured over
that slide's tiles in the dataset (cosyn.stages.texture.stain), instead of a training slide's drawn at random.

Job i (tile name `syn_{i:06d}`) is a pure function of (data, seed, i), so a run can be resumed,
extended to a larger N, or sharded: under `torchrun --nproc_per_node W -m cosyn augment ...`
(or `accelerate launch` on GPUs) rank r takes the jobs with i % W == r. Spell N as `--tiles N` there:
torchrun's own parser rejects `--n` as an ambiguous abbreviation of its options.

Output folder, readable by `read_dataset(out, "folder")`, `train` and the segmenter:
    images/NAME.png  instances/NAME.tif (int32)  classes/NAME.png (uint8)
    meta/NAME.json        the layout at the model's mpp, sampling params (with the enrichment's counts),
                          per-instance classes, origin
    classes.json          class set, mpp, tissue, source of every tile (the folder format's metadata)
    generation.json       the settings (with the second stage's); a resumed run must match them
A tile is written file by file, each file atomically, the image last: a tile counts as done when
all four files exist, and an interrupted one is generated again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image
from scipy.spatial import cKDTree
from tqdm import tqdm

from cosyn import __version__
from cosyn.core.classes import ClassSet
from cosyn.core.layout import Layout
from cosyn.data.dataset import split_by_source
from cosyn.data.formats import read_dataset
from cosyn.data.sample import Sample, sample_from_triple
from cosyn.data.targets import layout_from_sample
from cosyn.enrichment import enrich, record_in
from cosyn.io.fileio import atomic_write, remove_leftovers_in
from cosyn.io.guards import refuse_overlap
from cosyn.model.pipeline import CoSynPipeline
from cosyn.model.ranges import Bounds, check_numbers
from cosyn.model.settings import SamplingSettings
from cosyn.stages.texture.stain import Stain
from cosyn.training.config import TRAIN_RANGES, TrainConfig

TILE_DIRS = {"image": ("images", ".png"), "inst": ("instances", ".tif"), "class": ("classes", ".png"),
             "meta": ("meta", ".json")}
RUN_FILE = "generation.json"
MIN_SPACING_PERCENTILE = 5  # of real nearest-neighbour distances: the closest real nuclei sit this near
PERTURB_STREAM, ENRICH_STREAM = 1, 2  # job i's random streams: default_rng([seed, i, stream])


class AugmentError(RuntimeError):
    """A run that cannot go on as asked; the message says why."""


# Each number's sane range (inclusive), checked on construction: NaN jitter sampled tiles, a density of 1e308
# overflowed the random draw, and --n -1 "succeeded" with nothing made.
PERTURBATION_RANGES: dict[str, Bounds] = {"jitter_um": (0.0, 10.0), "density": (0.0, 0.9)}
AUGMENT_RANGES: dict[str, Bounds] = {"n": (1, 10_000_000), "val_fraction": TRAIN_RANGES["val_fraction"],
                                     "split_seed": TRAIN_RANGES["seed"], "seed": (0, 2**63 - 1)}


@dataclass
class Perturbation:
    """jitter_um: the sd of each centroid's shift; density: each tile's factor is drawn from [1 ± density]."""

    dihedral: bool = True
    jitter_um: float = 0.5
    density: float = 0.25

    def __post_init__(self) -> None:
        check_numbers(self, PERTURBATION_RANGES, "perturbation")


@dataclass
class Job:
    """One tile to generate: `layout` is in the source tile's pixels and mpp."""

    index: int
    name: str
    layout: Layout
    seed: int
    source: str
    origin: dict[str, Any]
    enrichment: dict[str, Any] | None = None  # what enrichment did to `layout` (cosyn.enrichment.enrich)
    stain: Stain | None = None  # the stain its tile is made in (`match_stain`); None: a bank slide's, drawn per tile


@dataclass
class SourceTile:
    """What planning needs from a real tile: its layout and provenance, not its pixels."""

    name: str
    source: str
    layout: Layout

    @classmethod
    def from_sample(cls, s: Sample) -> SourceTile:
        return cls(s.name, s.source or s.name, layout_from_sample(s))


# -- layout statistics and perturbations --------------------------------------------------------------
def min_spacing_px(tiles: Sequence[SourceTile]) -> float:
    """A low percentile of real nearest-neighbour centroid distances, in the tiles' pixels."""
    nn = [cKDTree(xy).query(xy, k=2)[0][:, 1] for t in tiles if len(xy := t.layout.xy()) > 1]
    return float(np.percentile(np.concatenate(nn), MIN_SPACING_PERCENTILE)) if nn else 4.0


def dihedral_points(xy: np.ndarray, k: int, width: int, height: int) -> tuple[np.ndarray, int, int]:
    """Centroids under `cosyn.data.dataset.dihedral`'s transform k: k % 4 quarter turns of np.rot90
    (pixel (x, y) → (y, W - 1 - x)), then a left-right flip when k >= 4."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    for _ in range(k % 4):
        xy = np.column_stack([xy[:, 1], width - 1 - xy[:, 0]])
        width, height = height, width
    if k >= 4:
        xy = np.column_stack([width - 1 - xy[:, 0], xy[:, 1]])
    return xy, width, height


def _clip(xy: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.clip(xy, 0, [width - 1e-3, height - 1e-3])


def _far_enough(p: np.ndarray, xy: np.ndarray, spacing: float) -> bool:
    return not len(xy) or float(np.min(np.hypot(*(xy - p).T))) >= spacing


def resample_density(xy: np.ndarray, cls: np.ndarray, factor: float, spacing: float, width: int, height: int,
                     rng: np.random.Generator, tries: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Each class keeps round(factor · n_class) points: a random subset, or extra points placed
    1-2 spacings from a random point of the same class and at least `spacing` from all others
    (a point that finds no room within `tries` is left out)."""
    keep_xy, keep_cls = [], []
    for c in np.unique(cls):
        idx = np.flatnonzero(cls == c)
        target = int(round(factor * len(idx)))
        chosen = rng.choice(idx, size=min(target, len(idx)), replace=False)
        keep_xy.append(xy[chosen])
        keep_cls.append(np.full(len(chosen), c))
    out_xy = np.concatenate(keep_xy) if keep_xy else np.zeros((0, 2))
    out_cls = np.concatenate(keep_cls) if keep_cls else np.zeros(0, np.int64)
    for c in np.unique(cls):
        idx = np.flatnonzero(cls == c)
        for _ in range(int(round(factor * len(idx))) - len(idx)):
            for _ in range(tries):
                angle, radius = rng.uniform(0, 2 * np.pi), spacing * rng.uniform(1.0, 2.0)
                p = xy[rng.choice(idx)] + radius * np.array([np.cos(angle), np.sin(angle)])
                if 0 <= p[0] < width and 0 <= p[1] < height and _far_enough(p, out_xy, spacing):
                    out_xy, out_cls = np.vstack([out_xy, p]), np.append(out_cls, c)
                    break
    return out_xy, out_cls.astype(np.int64)


def perturbed_layout(layout: Layout, p: Perturbation, spacing: float, rng: np.random.Generator,
                     default_mpp: float = 0.5) -> tuple[Layout, dict]:
    """`layout` under a random dihedral transform, jitter and density change; also what was done.
    A layout without mpp is at the model's (`default_mpp`), as the layout contract says."""
    k = int(rng.integers(0, 8)) if p.dihedral else 0
    xy, w, h = dihedral_points(layout.xy(), k, layout.width, layout.height)
    cls = layout.class_ids()
    mpp = layout.mpp or default_mpp
    if p.jitter_um > 0:
        xy = _clip(xy + rng.normal(0, p.jitter_um / mpp, xy.shape), w, h)
    factor = float(rng.uniform(1 - p.density, 1 + p.density)) if p.density > 0 else 1.0
    xy, cls = resample_density(xy, cls, factor, spacing, w, h, rng)
    out = Layout.from_arrays(w, h, layout.classes, xy, cls, mpp=layout.mpp, tissue=layout.tissue)
    return out, {"dihedral": k, "density_factor": round(factor, 4), "jitter_um": p.jitter_um}


def random_layout_like(template: Layout, spacing: float, rng: np.random.Generator, tries: int = 30) -> Layout:
    """`template`'s canvas and per-class counts, points placed uniformly at least `spacing` apart."""
    xy: list[np.ndarray] = []
    cls: list[int] = []
    for c in rng.permutation(template.class_ids()):
        for _ in range(tries):
            p = rng.uniform([0, 0], [template.width, template.height])
            if _far_enough(p, np.array(xy).reshape(-1, 2), spacing):
                xy.append(p)
                cls.append(int(c))
                break
    return Layout.from_arrays(template.width, template.height, template.classes,
                              _clip(np.array(xy).reshape(-1, 2), template.width, template.height),
                              np.array(cls, np.int64), mpp=template.mpp, tissue=template.tissue)


def tile_name(index: int) -> str:
    return f"syn_{index:06d}"


def plan_jobs(tiles: Sequence[SourceTile], n: int, seed: int = 0, random_layouts: bool = False,
              perturbation: Perturbation | None = None, default_mpp: float = 0.5,
              enrich_factors: Mapping[str, float] | None = None) -> list[Job]:
    """N jobs; job i depends on (tiles, seed, i) only. Tiles are cycled in a seeded order per pass,
    so the first len(tiles) jobs use every tile once. With `enrich_factors`, each job's layout is
    enriched after its perturbations."""
    if not tiles:
        raise AugmentError("no real tiles to take layouts from")
    p = perturbation or Perturbation()
    spacing = min_spacing_px(tiles)
    jobs = []
    for i in range(n):
        epoch, offset = divmod(i, len(tiles))
        tile = tiles[int(np.random.default_rng([seed, epoch]).permutation(len(tiles))[offset])]
        rng = np.random.default_rng([seed, i, PERTURB_STREAM])
        if random_layouts:
            layout, origin = random_layout_like(tile.layout, spacing, rng), {"random": True, "counts_from": tile.name}
            source = "synthetic-random"
        else:
            layout, changes = perturbed_layout(tile.layout, p, spacing, rng, default_mpp)
            origin = {"tile": tile.name, "source": tile.source, **changes}
            source = f"synthetic-{tile.source}"
        record = None
        if enrich_factors:
            layout, record = enrich(layout, enrich_factors, [seed, i, ENRICH_STREAM], default_mpp)
        jobs.append(Job(i, tile_name(i), layout, int(rng.integers(2**31)), source, origin, record))
    return jobs


# -- writing tiles ----------------------------------------------------------------------------------------
def tile_path(out: Path, name: str, part: str) -> Path:
    folder, ext = TILE_DIRS[part]
    return out / folder / f"{name}{ext}"


def tile_done(out: Path, name: str) -> bool:
    return all(tile_path(out, name, part).is_file() for part in TILE_DIRS)


def write_tile(out: Path, sample: Sample, meta: dict[str, Any]) -> None:
    """The folder format's three files plus meta/NAME.json, the image last (it marks the tile)."""
    name = sample.name
    atomic_write(tile_path(out, name, "meta"), lambda p: Path(p).write_text(json.dumps(meta, indent=1)))
    atomic_write(tile_path(out, name, "inst"),
                  lambda p: tifffile.imwrite(p, sample.inst_map.astype(np.int32), compression="zlib"))
    atomic_write(tile_path(out, name, "class"),
                  lambda p: Image.fromarray(sample.class_map.astype(np.uint8)).save(p, format="PNG", compress_level=1))
    atomic_write(tile_path(out, name, "image"),
                  lambda p: Image.fromarray(sample.image).save(p, format="PNG", compress_level=1))


def read_meta(out: Path, name: str) -> dict[str, Any]:
    return json.loads(tile_path(out, name, "meta").read_text())


def write_classes_json(out: Path, jobs: Sequence[Job], classes: ClassSet, mpp: float, tissue: str | None) -> None:
    """The folder format's classes.json for every planned tile (identical from every rank)."""
    raw = {"classes": classes.to_list(), "tissue": tissue, "mpp": mpp, "sources": {j.name: j.source for j in jobs}}
    atomic_write(out / "classes.json", lambda p: Path(p).write_text(json.dumps(raw, indent=1)))


def check_run_settings(out: Path, settings: dict[str, Any]) -> None:
    """Refuse to mix tiles of different settings in one folder; record them on the first run."""
    path = out / RUN_FILE
    if path.is_file():
        old = json.loads(path.read_text())
        changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        if changed:
            raise AugmentError(f"{out} holds tiles made with other settings ({', '.join(changed)} differ); "
                               f"use a new --out or the settings in {path}")
        return
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda p: Path(p).write_text(json.dumps(settings, indent=1)))


# -- generation ------------------------------------------------------------------------------------------
def rank_and_world() -> tuple[int, int]:
    """This process' shard: torchrun and accelerate launch both set RANK and WORLD_SIZE."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def generate(pipe: CoSynPipeline, jobs: Sequence[Job], out: str | Path, sampling: SamplingSettings, rank: int = 0,
             world: int = 1, progress: bool = True, desc: str = "augment") -> dict[str, int]:
    """Generate this rank's share of `jobs` into `out`, skipping finished tiles, one triple per job with the
    job's seed (`sampling`'s own seed and n are not used). Tiles are written at the mpp of the triple:
    the model's, or the layout's when the second stage ran."""
    out = Path(out)
    mine = [j for j in jobs if j.index % world == rank]
    todo = [j for j in mine if not tile_done(out, j.name)]
    classes = pipe.class_set
    bar = tqdm(total=len(mine), initial=len(mine) - len(todo), desc=f"{desc} {rank + 1}/{world}", unit="tile",
               disable=not progress, position=rank, dynamic_ncols=True)
    with bar:
        for job in todo:
            triple = pipe.sample(job.layout, settings=sampling, seed=job.seed, n=1, stain=job.stain)[0]
            record_in([triple], job.enrichment)
            sample = sample_from_triple(triple, job.name, job.source, classes, triple.layout.mpp)
            meta = {"layout": triple.layout.to_dict(), "params": triple.params, "origin": job.origin,
                    "inst_classes": {str(k): int(v) for k, v in triple.inst_classes.items()}}
            write_tile(out, sample, meta)
            bar.update()
    return {"rank": rank, "world": world, "assigned": len(mine), "skipped": len(mine) - len(todo),
            "generated": len(todo)}


def read_samples(data: str | Path, fmt: str = "auto") -> list[Sample]:
    samples = read_dataset(data, fmt)
    return [samples[i] for i in range(len(samples))]


def source_tiles(samples: Sequence[Sample], split: str = "train", val_fraction: float = TrainConfig.val_fraction,
                 split_seed: int = TrainConfig.seed) -> tuple[list[SourceTile], ClassSet]:
    """The real tiles of `split` ("train", "val" or "all"), split by source as training splits them."""
    train_idx, val_idx = split_by_source(samples, val_fraction, split_seed)
    picked = {"train": train_idx, "val": val_idx, "all": range(len(samples))}[split]
    return [SourceTile.from_sample(samples[i]) for i in picked], samples[0].classes


def load_source_tiles(data: str | Path, fmt: str = "auto", split: str = "train",
                      val_fraction: float = TrainConfig.val_fraction,
                      split_seed: int = TrainConfig.seed) -> tuple[list[SourceTile], ClassSet]:
    return source_tiles(read_samples(data, fmt), split, val_fraction, split_seed)


def source_stains(samples: Sequence[Sample], where: str | Path) -> dict[str, Stain]:
    """The stain of every source slide among `samples` (the dataset `where`), over all its tiles."""
    by_source: dict[str, list[np.ndarray]] = {}
    for s in samples:
        by_source.setdefault(s.source or s.name, []).append(s.image)
    stains = {}
    for source, images in by_source.items():
        try:
            stains[source] = Stain.of(images)
        except ValueError as e:
            raise AugmentError(f"{where}: cannot match the stain of source slide {source!r}: {e}") from None
    return stains


@dataclass
class AugmentConfig:
    checkpoint: str
    data: str
    out: str
    n: int
    format: str = "auto"
    split: str = "train"
    val_fraction: float = TrainConfig.val_fraction
    split_seed: int = TrainConfig.seed
    seed: int = 0
    random_layouts: bool = False
    perturbation: Perturbation | None = None
    sampling: SamplingSettings | None = None
    enrich: dict[str, float] | None = None  # {class: factor}; None: layouts as perturbed
    match_stain: bool = False  # each tile in the stain of its layout's source slide (all its tiles in `data`)

    def __post_init__(self) -> None:
        check_numbers(self, AUGMENT_RANGES, "augment options")

    def settings(self, checkpoint_sha256: str, second_stage: dict[str, Any] | None) -> dict[str, Any]:
        """What makes a tile what it is: all but N and the output folder, with the weights' hash, the second
        stage's spec (config.json, outside that hash) and the code's version (a release may change what the
        same settings make: 0.2.0 draws each texture-stage tile's stain). Seed and n come from the jobs;
        refine does not count."""
        d = asdict(self)
        for key in ("n", "out", "checkpoint"):
            d.pop(key)
        if d["sampling"] is not None:
            d["sampling"] = {k: d["sampling"][k] for k in ("steps", "guidance", "sampler")}
        d.update(data=str(Path(self.data).resolve()), checkpoint_sha256=checkpoint_sha256, second_stage=second_stage,
                 cosyn_version=__version__)
        return d


def augment(cfg: AugmentConfig, pipe: CoSynPipeline | None = None, rank: int | None = None, world: int | None = None,
            progress: bool = True, trust_unverified: bool = False) -> dict[str, int]:
    """Plan N jobs from `cfg.data` and generate this rank's share into `cfg.out` (`trust_unverified`: load a
    checkpoint whose weights have no recorded checksum)."""
    refuse_overlap(cfg.data, cfg.out, "--out")  # synthetic tiles must never land among (or around) the real ones
    cfg.perturbation = cfg.perturbation or Perturbation()
    cfg.sampling = cfg.sampling or SamplingSettings()
    if rank is None or world is None:
        rank, world = rank_and_world()
    if pipe is None:
        pipe = CoSynPipeline.from_pretrained(cfg.checkpoint, device=_device(), trust_unverified=trust_unverified)
    samples = read_samples(cfg.data, cfg.format)  # once: the layouts and, with match_stain, the slides' stains
    tiles, classes = source_tiles(samples, cfg.split, cfg.val_fraction, cfg.split_seed)
    stains = source_stains(samples, cfg.data) if cfg.match_stain else {}
    del samples  # planning needs layouts only: a large dataset's pixels are not held through the run
    sources = {t.name: t.source for t in tiles}
    if classes.names != pipe.class_set.names:
        raise AugmentError(f"{cfg.data} has classes {classes.to_list()}, the model {pipe.class_set.to_list()}")
    out = Path(cfg.out)
    remove_leftovers_in(out)  # what a killed run left half-written; live ranks' files are kept
    check_run_settings(out, cfg.settings(pipe.sha256, pipe.config.second_stage))
    jobs = plan_jobs(tiles, cfg.n, cfg.seed, cfg.random_layouts, cfg.perturbation, pipe.config.mpp, cfg.enrich)
    if cfg.match_stain:
        try:  # refused before any tile is sampled, not at the first one
            pipe.check_stain(jobs[0].layout, cfg.sampling.refine)
        except ValueError as e:
            raise AugmentError(f"--match-stain: {e}") from None
        for job in jobs:
            job.stain = stains[job.origin.get("source") or sources[job.origin["counts_from"]]]
    tissues = {t.layout.tissue for t in tiles}
    write_classes_json(out, jobs, classes, output_mpp(pipe, jobs, cfg.sampling.refine),
                       next(iter(tissues)) if len(tissues) == 1 else None)
    return generate(pipe, jobs, out, cfg.sampling, rank, world, progress)


def output_mpp(pipe: CoSynPipeline, jobs: Sequence[Job], refine: bool) -> float:
    """The one mpp every tile comes at (classes.json holds one); a second stage bringing tiles to their
    layouts' differing resolutions would make a mixed folder, refused."""
    mpps = {round(pipe.output_mpp(j.layout, refine), 9) for j in jobs} or {pipe.config.mpp}
    if len(mpps) > 1:
        raise AugmentError(f"the second stage would write tiles at {sorted(mpps)} µm/px, the real tiles' mixed "
                           "resolutions; pass --no-refine for tiles at the model's mpp")
    return mpps.pop()


def _device() -> str:
    import torch

    return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
