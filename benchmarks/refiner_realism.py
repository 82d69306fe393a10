"""Realism of base vs refined triples against real CoNSeP tiles, at 0.25 and 0.5 µm/px.

    python benchmarks/refiner_realism.py --checkpoint checkpoints/default \
        --data ../shared/data/consep_patched --refiner gan=runs/ref_gan/refiner --out runs/realism

The judge (a small CNN, cosyn/evaluation/c2st.py) learns real vs generated on tiles of the training
split's source tiles (2 patches of each of 23 sources) and is scored on the validation split's 64
tiles (4 other sources): split by source tile. The base model samples each tile's own layout once;
the outputs are cached in OUT/base_*/ so that every variant is judged on the same base outputs.
Everything a judge sees is JPEG q75, like the real patches. Per variant: C2ST AUC over 3 seeds,
KID on 512 64² crops, the Laplacian-variance ratio, the nuclear hematoxylin distance, and layout
fidelity at the output resolution. Controls: real vs real (alternate patches of each tile's source)
and real seen at 0.5 µm/px, upsampled ("blurred real").
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from cosyn.core.layout import Layout
from cosyn.data.dataset import resample_sample, split_by_source
from cosyn.data.formats import read_dataset
from cosyn.data.sample import Sample
from cosyn.data.targets import point_map
from cosyn.evaluation.c2st import C2STConfig, as_acquired, c2st, crops
from cosyn.evaluation.realism import inception_features, kernel_inception_distance
from cosyn.evaluation.texture import hematoxylin_distance, laplacian_ratio
from cosyn.model.instances import cut_instances
from cosyn.model.pipeline import CoSynPipeline
from cosyn.refiner.stage import Refiner, unsharp_mask
from cosyn.refiner.tensors import from_unit, to_unit, upsampled_inputs

BASE_ROW = "base, bicubic x2"
TRAIN_PATCHES = (0, 10)  # of each training source's 16 patches: apart on the tile


def base_outputs(pipe: CoSynPipeline, tiles: Sequence[Sample], out: Path, steps: int, seed0: int,
                 guidance: float = 2.0) -> list[dict]:
    """The base model's triple for each tile's own layout, cached as OUT/<tile>.npz."""
    out.mkdir(parents=True, exist_ok=True)
    result = []
    for i, s in enumerate(tiles):
        path = out / f"{s.name}.npz"
        if not path.is_file():
            layout = Layout.from_arrays(s.width, s.height, s.classes, s.centroids, s.inst_classes, mpp=s.mpp,
                                        tissue=s.tissue)
            t = pipe.sample(layout, steps=steps, guidance=guidance, seed=seed0 + i, refine=False)[0]
            np.savez(path, image=t.image, dist=t.dist_map, class_map=t.class_map, xy=t.layout.xy(),
                     class_ids=t.layout.class_ids())
            print(f"base {i + 1}/{len(tiles)} {s.name}", flush=True)
        result.append(dict(np.load(path)))
    return result


def bicubic(base: dict, k: int) -> dict:
    """The base triple smoothly upsampled 2x: what `--output-mpp 0.25` gave before the refiner."""
    image, dist, probs = upsampled_inputs(to_unit([base["image"]]), torch.from_numpy(base["dist"])[None, None],
                                          torch.from_numpy(base["class_map"])[None], k, 2)
    return {"image": from_unit(image)[0], "dist": dist[0, 0].numpy(), "class_map": probs[0].argmax(0).byte().numpy()}


def lab_stats(images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean over images of each image's per-channel LAB mean and std (Reinhard's target)."""
    labs = [cv2.cvtColor(im, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32) for im in images]
    return np.mean([lab.mean(0) for lab in labs], 0), np.mean([lab.std(0) for lab in labs], 0)


def stain_matched(image: np.ndarray, target: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Reinhard colour transfer: the image's LAB channels moved to the target mean and std."""
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    mean, std = lab.reshape(-1, 3).mean(0), lab.reshape(-1, 3).std(0) + 1e-6
    out = (lab - mean) / std * target[1] + target[0]
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def refined(ref: Refiner, base: dict, k: int, seed: int) -> dict:
    up = bicubic(base, k)
    pts = point_map(base["xy"] * 2, base["class_ids"], *up["class_map"].shape)
    return {**up, "image": ref.refine(base["image"], base["dist"], base["class_map"], pts, seed=seed)}


def fidelity(outputs: Sequence[dict], bases: Sequence[dict]) -> dict[str, float]:
    """Share of centroids that yield an instance, and of those, the share with the requested class."""
    found = right = total = 0
    for o, b in zip(outputs, bases, strict=True):
        xy, ids = b["xy"] * 2, b["class_ids"]
        r = cut_instances(o["dist"], o["class_map"], xy, ids)
        missed = set(int(i) for i in r.missed)
        total += len(xy)
        for j, (x, y) in enumerate(xy):
            if j in missed:
                continue
            found += 1
            row, col = (min(int(round(v)), n - 1) for v, n in zip((y, x), r.inst_map.shape, strict=True))
            inst = int(r.inst_map[row, col])
            right += int(r.inst_classes.get(inst, -1) == int(ids[j]))
    return {"yield": found / max(total, 1), "class_accuracy": right / max(found, 1)}


def half(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [cv2.resize(im, (im.shape[1] // 2, im.shape[0] // 2), interpolation=cv2.INTER_AREA) for im in images]


class Judge:
    """Scores one variant's images (train tiles, test tiles) against the real ones."""

    def __init__(self, real_train: list[np.ndarray], real_test: list[np.ndarray], real_test_masks, cfg: C2STConfig):
        self.real_train, self.real_test, self.real_test_masks, self.cfg = real_train, real_test, real_test_masks, cfg
        pool = [c for im in real_test for c in crops(im, 64)]
        self.real_feats = inception_features([pool[i] for i in np.random.default_rng(1).permutation(len(pool))[:512]])

    def __call__(self, name: str, train: list[np.ndarray], test: list[np.ndarray], test_masks) -> dict:
        t0 = time.monotonic()
        train, test = [as_acquired(im) for im in train], [as_acquired(im) for im in test]
        res = {"c2st_0.25": c2st((self.real_train, train), (self.real_test, test), self.cfg)}
        res["c2st_0.5"] = c2st((half(self.real_train), half(train)), (half(self.real_test), half(test)), self.cfg)
        pool = [c for im in test for c in crops(im, 64)]
        pick = np.random.default_rng(0).permutation(len(pool))[:512]
        kid, kid_std = kernel_inception_distance(self.real_feats, inception_features([pool[i] for i in pick]),
                                                 subsets=50, subset_size=256)
        res |= {"kid": kid, "kid_std": kid_std, "laplacian_ratio": laplacian_ratio(test, self.real_test),
                "hematoxylin_w1": hematoxylin_distance(test, test_masks, self.real_test, self.real_test_masks)}
        print(f"{name}: {json.dumps(res)} ({time.monotonic() - t0:.0f} s)", flush=True)
        return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="checkpoints/default")
    ap.add_argument("--data", default="../shared/data/consep_patched")
    ap.add_argument("--refiner", action="append", default=[], help="NAME=FOLDER, repeatable")
    ap.add_argument("--out", default="runs/realism")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=2.0, help="of the base model's sampling (a new --out for "
                                                                   "another value: base outputs are cached there)")
    ap.add_argument("--c2st-steps", type=int, default=500)
    ap.add_argument("--no-controls", action="store_true", help="skip the real-vs-real and blurred-real rows")
    ap.add_argument("--no-base", action="store_true", help="skip the base-model row (judged in an earlier run)")
    ap.add_argument("--stain-match", action="store_true",
                    help="also judge the base with Reinhard colour transfer to the training tiles' stain")
    ap.add_argument("--sharpen", action="append", default=[], metavar="SIGMA:AMOUNT",
                    help="also judge the base, bicubic x2, then unsharp-masked (repeatable)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    samples = read_dataset(args.data)
    train_idx, val_idx = split_by_source(samples, 0.15, 0)
    val = [samples[i] for i in val_idx]
    train = [samples[i] for i in train_idx if int(samples[i].name.rsplit("_", 1)[1]) in TRAIN_PATCHES]
    pipe = CoSynPipeline.from_pretrained(args.checkpoint)
    k = pipe.config.denoiser.num_classes
    base_val = base_outputs(pipe, val, out / "base_val", args.steps, 0, args.guidance)
    base_train = base_outputs(pipe, train, out / "base_train", args.steps, 1000, args.guidance)
    real_masks = [s.inst_map > 0 for s in val]
    judge = Judge([s.image for s in train], [s.image for s in val], real_masks,
                  C2STConfig(crop=64, steps=args.c2st_steps))
    path = out / "report.json"
    # rows judged in an earlier run (--no-base, --no-controls) stay in the report
    report: dict = json.loads(path.read_text()) if path.is_file() else {"refine_seconds_per_256px_median": {}}
    report |= {"validation tiles": len(val), "validation sources": sorted({s.source for s in val}),
               "judge training tiles": len(train), "base sampling": {"steps": args.steps, "guidance": args.guidance}}

    def record(name: str, result: dict) -> None:
        report[name] = result
        path.write_text(json.dumps(report, indent=1))

    if not args.no_controls:
        record("control: real vs real (alternate patches)", {"c2st_0.25": c2st(
            ([s.image for s in train[::2]], [s.image for s in train[1::2]]),
            ([s.image for s in val[::2]], [s.image for s in val[1::2]]), judge.cfg)})
        print(report["control: real vs real (alternate patches)"], flush=True)

        def blurred(tiles: Sequence[Sample]) -> list[np.ndarray]:
            return [cv2.resize(resample_sample(s, 0.5).image, (s.width, s.height), interpolation=cv2.INTER_CUBIC)
                    for s in tiles]

        record("control: real at 0.5, bicubic x2", judge("blurred real", blurred(train), blurred(val), real_masks))

    def bicubic_variant(b: dict, i: int) -> dict:
        return bicubic(b, k)

    variants: dict[str, Callable[[dict, int], dict]] = {}
    if not args.no_base:
        variants[BASE_ROW] = bicubic_variant
    if args.stain_match:
        target = lab_stats([s.image for s in train])
        variants["base, bicubic x2, Reinhard to the training stain"] = \
            lambda b, i: {**bicubic(b, k), "image": stain_matched(bicubic(b, k)["image"], target)}
    for spec in args.sharpen:
        sigma, amount = (float(v) for v in spec.split(":"))
        variants[f"base, bicubic x2, unsharp mask sigma {sigma:g} px amount {amount:g}"] = \
            lambda b, i, sigma=sigma, amount=amount: {**bicubic(b, k), "image": unsharp_mask(bicubic(b, k)["image"],
                                                                                         sigma, amount)}
    for spec in args.refiner:
        name, folder = spec.split("=", 1)
        ref = Refiner.from_pretrained(folder)
        variants[f"base + refiner {name}"] = lambda b, i, ref=ref: refined(ref, b, k, seed=i)
    # the grid always shows real | base (bicubic x2) | each judged refiner, whatever this run judges
    grid_columns = [[s.image for s in val], [bicubic(b, k)["image"] for b in base_val]]
    for name, make in variants.items():
        times = []
        outputs_val = []
        for i, b in enumerate(base_val):
            t0 = time.perf_counter()
            outputs_val.append(make(b, i))
            times.append(time.perf_counter() - t0)
        outputs_train = [make(b, 1000 + i) for i, b in enumerate(base_train)]
        report["refine_seconds_per_256px_median"][name] = statistics.median(times)
        result = judge(name, [o["image"] for o in outputs_train], [o["image"] for o in outputs_val],
                       [o["class_map"] > 0 for o in outputs_val])
        record(name, {**result, "fidelity_0.25": fidelity(outputs_val, base_val)})
        if make is not bicubic_variant:
            grid_columns.append([o["image"] for o in outputs_val])
    save_grid(out / "grid.jpg", grid_columns, rows=4)
    print(f"grid columns: real, base bicubic x2, {', '.join(v for v in variants if v != BASE_ROW)}", flush=True)


def save_grid(path: Path, columns: list[list[np.ndarray]], rows: int) -> None:
    pick = np.linspace(0, len(columns[0]) - 1, rows).astype(int)
    grid = np.concatenate([np.concatenate([c[i] for c in columns], 1) for i in pick], 0)
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])


if __name__ == "__main__":
    main()
