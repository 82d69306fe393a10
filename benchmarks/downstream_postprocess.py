"""Calibrate the segmenter's post-processing on training tiles, then score the validation tiles with it.

HoVer-Net's marker threshold (0.4) and Sobel kernel (21 px) were chosen for its own HV maps; a segmenter
trained with a CPU budget predicts softer ones. This grid picks them by mean PQ on every 4th training tile
(and whether foreground no marker reaches is kept as nuclei)
(never on the validation tiles, so the validation score stays an honest held-out figure), then scores the
validation tiles with HoVer-Net's defaults and with the calibrated settings, side by side.

    .venv/bin/python benchmarks/downstream_postprocess.py /tmp/cosyn_downstream_study/real_none_seed0
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cosyn.data.dataset import split_by_source  # noqa: E402
from cosyn.data.formats import read_dataset  # noqa: E402
from cosyn.evaluation.metrics import pq  # noqa: E402
from cosyn.evaluation.segmenter import score, truths  # noqa: E402
from cosyn.io.fileio import atomic_write, file_sha256  # noqa: E402
from cosyn.segmentation import Segmenter  # noqa: E402
from cosyn.segmentation.model import HV, NP  # noqa: E402
from cosyn.segmentation.postprocess import instance_map  # noqa: E402
from cosyn.segmentation.segmenter import WEIGHTS_NAME  # noqa: E402
from cosyn.training.config import TrainConfig  # noqa: E402

MARKER_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
SOBEL_KERNELS = (11, 21, 31)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("segmenter", type=Path)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "consep_patched"))
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "downstream_postprocess_cpu.json")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    seg = Segmenter.load(args.segmenter)
    seq = read_dataset(args.data)
    samples = [seq[i] for i in range(len(seq))]
    train_idx, val_idx = split_by_source(samples, TrainConfig.val_fraction, TrainConfig.seed)
    calib = truths([samples[i] for i in train_idx[::4]], seg.config.mpp)
    outputs = [seg.outputs(t.image) for t in calib]  # the network once; the grid re-runs post-processing only
    grid = {}
    for keep, kernel, threshold in itertools.product((False, True), SOBEL_KERNELS, MARKER_THRESHOLDS):
        config = replace(seg.config, sobel_kernel=kernel, marker_threshold=threshold, keep_unmarked=keep)
        key = f"kernel={kernel},marker={threshold},keep_unmarked={keep}"
        grid[key] = float(np.mean([pq(t.inst_map, instance_map(o[NP], o[HV], config))["pq"]
                                   for t, o in zip(calib, outputs, strict=True)]))
        print(f"{key}: train PQ {grid[key]:.3f}", flush=True)
    best = max(grid, key=grid.get)
    kernel, threshold, keep = (v.split("=")[1] for v in best.split(","))
    tests = truths([samples[i] for i in val_idx], seg.config.mpp)
    default = score(seg, tests)
    chosen = replace(seg.config, sobel_kernel=int(kernel), marker_threshold=float(threshold),
                     keep_unmarked=keep == "True")
    calibrated_seg = Segmenter(seg.net, chosen, seg.train_info)
    calibrated = score(calibrated_seg, tests)
    result = {"segmenter": str(args.segmenter), "checkpoint_sha256": file_sha256(args.segmenter / WEIGHTS_NAME),
              "calibration_tiles": len(calib), "grid_train_pq": grid, "chosen": best,
              "val_hovernet_defaults": default, "val_calibrated": calibrated}
    atomic_write(args.results, lambda path: Path(path).write_text(json.dumps(result, indent=1, default=lambda v: None)))
    for name, r in (("HoVer-Net defaults", default), (f"calibrated ({best})", calibrated)):
        print(f"val, {name}: PQ {r['pq']:.3f} mPQ+ {r['mpq_plus']:.3f} AJI {r['aji']:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
