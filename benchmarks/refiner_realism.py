"""Realism of base vs refined triples on the held-out CoNSeP tiles, at 0.25 and 0.5 µm/px.

    python benchmarks/refiner_realism.py --checkpoint checkpoints/default \
        --data ../shared/data/consep_patched --refiner gan=runs/ref_gan/refiner --out runs/realism

For every validation tile (training's split: val_fraction 0.15, seed 0) the base model samples the
tile's own layout once (cached in OUT/base/, so refiners are compared on the same base outputs). Each
variant is then judged against the real tiles: C2ST AUC (3 seeds, split by source tile, JPEG q75),
KID on 64² crops, the Laplacian-variance ratio and the nuclear hematoxylin distance. Controls: real vs
real (disjoint source tiles) and real seen at 0.5 µm/px, upsampled ("blurred real").
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from cosyn.core.layout import Layout
from cosyn.data.dataset import resample_sample, split_by_source
from cosyn.data.formats import read_dataset
from cosyn.data.targets import distance_map, point_map
from cosyn.evaluation.c2st import C2STConfig, as_acquired, c2st, crops
from cosyn.evaluation.realism import inception_features, kernel_inception_distance
from cosyn.evaluation.texture import hematoxylin_distance, laplacian_ratio
from cosyn.model.instances import cut_instances
from cosyn.model.pipeline import CoSynPipeline
from cosyn.refiner.data import from_unit, to_unit, upsampled_inputs
from cosyn.refiner.stage import Refiner


def base_outputs(pipe: CoSynPipeline, real, out: Path, steps: int) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    result = []
    for i, s in enumerate(real):
        path = out / f"{s.name}.npz"
        if not path.is_file():
            layout = Layout.from_arrays(s.width, s.height, s.classes, s.centroids, s.inst_classes, mpp=s.mpp,
                                        tissue=s.tissue)
            t = pipe.sample(layout, steps=steps, seed=i)[0]
            np.savez(path, image=t.image, dist=t.dist_map, class_map=t.class_map, xy=t.layout.xy(),
                     class_ids=t.layout.class_ids())
            print(f"base {i + 1}/{len(real)} {s.name}", flush=True)
        result.append(dict(np.load(path)))
    return result


def upsampled(base: dict, scale: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image, dist, probs = upsampled_inputs(to_unit([base["image"]]), torch.from_numpy(base["dist"])[None, None],
                                          torch.from_numpy(base["class_map"])[None], k, scale)
    return from_unit(image)[0], dist[0, 0].numpy(), probs[0].argmax(0).byte().numpy()


def fidelity(class_maps, dists, layouts) -> dict[str, float]:
    found = right = total = 0
    for cls, dist, (xy, ids) in zip(class_maps, dists, layouts, strict=True):
        r = cut_instances(dist, cls, xy, ids)
        total += len(xy)
        found += len(xy) - len(r.missed)
        right += sum(1 for j, (x, y) in enumerate(xy) if j not in set(r.missed)
                     and r.inst_classes.get(int(r.inst_map[int(round(y)), int(round(x))]), -1) == ids[j])
    return {"yield": found / total, "class_accuracy": right / max(found, 1)}


def judge(name: str, images, masks, real, real_masks, groups, cfg: C2STConfig, real_feats, crop: int) -> dict:
    acquired = [as_acquired(im) for im in images]
    t0 = time.monotonic()
    res = {"c2st": c2st(real, groups, acquired, groups, cfg)}
    pool = [c for im in acquired for c in crops(im, crop)]
    pick = np.random.default_rng(0).permutation(len(pool))[:512]
    kid, kid_std = kernel_inception_distance(real_feats, inception_features([pool[i] for i in pick]), subsets=50,
                                             subset_size=256)
    res |= {"kid": kid, "kid_std": kid_std, "laplacian_ratio": laplacian_ratio(acquired, real),
            "hematoxylin_w1": hematoxylin_distance(acquired, masks, real, real_masks)}
    print(f"{name}: {json.dumps(res)} ({time.monotonic() - t0:.0f} s)", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default="checkpoints/default")
    ap.add_argument("--data", default="../shared/data/consep_patched")
    ap.add_argument("--refiner", action="append", default=[], help="NAME=FOLDER, repeatable")
    ap.add_argument("--out", default="runs/realism")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--c2st-steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    samples = read_dataset(args.data)
    _, val = split_by_source(samples, 0.15, 0)
    real = [samples[i] for i in val]
    pipe = CoSynPipeline.from_pretrained(args.checkpoint)
    k = pipe.config.denoiser.num_classes
    bases = base_outputs(pipe, real, out / "base", args.steps)
    groups = [s.source for s in real]
    real_hi = [s.image for s in real]
    real_masks = [s.inst_map > 0 for s in real]
    layouts = [(b["xy"] * 2, b["class_ids"]) for b in bases]  # base canvas is at half the resolution
    cfg = C2STConfig(crop=64, steps=args.c2st_steps, batch=32)
    real_pool = [c for im in real_hi for c in crops(im, 64)]
    real_feats = inception_features([real_pool[i] for i in np.random.default_rng(1).permutation(len(real_pool))[:512]])

    variants: dict[str, tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]] = {}
    ups = [upsampled(b, 2, k) for b in bases]
    variants["base, bicubic x2"] = ([u[0] for u in ups], [u[1] for u in ups], [u[2] for u in ups])
    lowreal = [resample_sample(s, 0.5) for s in real]
    variants["control: real at 0.5, bicubic x2"] = (
        [cv2.resize(lr.image, (s.width, s.height), interpolation=cv2.INTER_CUBIC) for lr, s in zip(lowreal, real)],
        None, None)
    timing: dict[str, float] = {}
    for spec in args.refiner:
        name, folder = spec.split("=", 1)
        ref = Refiner.from_pretrained(folder)
        images, times = [], []
        for i, (b, (xy, ids)) in enumerate(zip(bases, layouts, strict=True)):
            pts = point_map(xy, ids, 256, 256)
            t0 = time.perf_counter()
            images.append(ref.refine(b["image"], b["dist"], b["class_map"], pts, seed=i))
            times.append(time.perf_counter() - t0)
        timing[name] = statistics.median(times)
        variants[f"refiner {name}"] = (images, [u[1] for u in ups], [u[2] for u in ups])
        oracle = [ref.refine(lr.image, distance_map(lr.inst_map), lr.class_map, point_map(s.centroids, s.inst_classes, 256, 256), i)
                  for i, (lr, s) in enumerate(zip(lowreal, real, strict=True))]
        variants[f"refiner {name} on real 0.5 input"] = (oracle, None, None)

    report: dict = {"tiles": len(real), "sources": sorted(set(groups)), "refine_seconds_median": timing}
    half = sorted(set(groups))[: len(set(groups)) // 2]
    a = [i for i, g in enumerate(groups) if g in half]
    b_ = [i for i, g in enumerate(groups) if g not in half]
    report["real vs real (disjoint sources)"] = {"c2st": c2st([real_hi[i] for i in a], [groups[i] for i in a],
                                                              [real_hi[i] for i in b_], [groups[i] for i in b_], cfg)}
    print("real vs real:", report["real vs real (disjoint sources)"], flush=True)
    for name, (images, dists, classes) in variants.items():
        masks = [c > 0 for c in classes] if classes is not None else real_masks
        res = {"0.25": judge(name, images, masks, real_hi, real_masks, groups, cfg, real_feats, 64)}
        if classes is not None:
            res["fidelity_0.25"] = fidelity(classes, dists, layouts)
        low = [cv2.resize(im, (128, 128), interpolation=cv2.INTER_AREA) for im in images]
        if name == "base, bicubic x2":
            low = [b["image"] for b in bases]
        res["0.5"] = {"c2st": c2st([lr.image for lr in lowreal], groups, [as_acquired(im) for im in low], groups,
                                   cfg)}
        report[name] = res
        (out / "report.json").write_text(json.dumps(report, indent=1))
    save_grid(out / "grid.jpg", real_hi, variants, rows=4)
    print(json.dumps(report, indent=1))


def save_grid(path: Path, real, variants, rows: int) -> None:
    pick = np.linspace(0, len(real) - 1, rows).astype(int)
    cols = [real] + [v[0] for v in variants.values()]
    grid = np.concatenate([np.concatenate([c[i] for c in cols], 1) for i in pick], 0)
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    print("grid columns:", ["real", *variants], flush=True)


if __name__ == "__main__":
    main()
