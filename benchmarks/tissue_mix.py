"""What kinds of tissue a candidate is made of, against the real training and validation tiles.

Every tile is cut into 32² windows (8 µm at 0.25 µm/px) described by their L*a*b* mean and spread. k-means
on the training tiles' windows gives the kinds of tissue; each set's share of each kind is printed with
the candidate's share over the training tiles'. Then the windows' contrast (the spread of L*), by how
much of the window is nucleus: real tissue has far more high-contrast cellular windows than a quilt.

    python benchmarks/tissue_mix.py --data ../shared/data/consep_patched /tmp/e_size8 [DIR ...]

Controls printed beside: the validation tiles (real, another patient) and, with `--control-blur`, the
validation tiles blurred with σ 1 px, which must lose their high-contrast windows.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import faiss
import numpy as np

from cosyn.data.dataset import split_by_source
from cosyn.data.formats import read_dataset
from cosyn.training.config import TrainConfig

WINDOW = 32
KINDS = 12
NUCLEUS_BINS = (0.05, 0.15, 0.3)  # the window's nucleus fraction: < .05, .05-.15, .15-.3, ≥ .3
HIGH_CONTRAST = 16.0  # spread of L* above which a window counts as high-contrast


def window_stats(image: np.ndarray, inst_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 6) L*a*b* mean and spread, and (n,) nucleus fraction, of the WINDOW² windows of one tile."""
    lab = cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    h, w = inst_map.shape
    feats, fractions = [], []
    for y in range(0, h - WINDOW + 1, WINDOW):
        for x in range(0, w - WINDOW + 1, WINDOW):
            block = lab[y:y + WINDOW, x:x + WINDOW].reshape(-1, 3)
            feats.append(np.r_[block.mean(0), block.std(0)])
            fractions.append(float((inst_map[y:y + WINDOW, x:x + WINDOW] > 0).mean()))
    return np.array(feats), np.array(fractions)


def set_stats(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    parts = [window_stats(im, inst) for im, inst in pairs]
    return np.concatenate([f for f, _ in parts]), np.concatenate([n for _, n in parts])


def contrast_line(name: str, feats: np.ndarray, fractions: np.ndarray) -> str:
    bins = np.searchsorted(NUCLEUS_BINS, fractions, side="right")
    cells = []
    for b in range(len(NUCLEUS_BINS) + 1):
        spread = feats[bins == b, 3]
        cells.append(f"{(bins == b).mean():.2f} / {np.median(spread):4.1f} / {(spread > HIGH_CONTRAST).mean():.2f}"
                     if len(spread) else "–")
    return f"| {name} | " + " | ".join(cells) + f" | {(feats[:, 3] > HIGH_CONTRAST).mean():.3f} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/consep_patched")
    ap.add_argument("--control-blur", action="store_true", help="also the validation tiles blurred, σ 1 px")
    ap.add_argument("candidates", nargs="*", type=Path)
    args = ap.parse_args()
    seq = read_dataset(args.data)
    samples = [seq[i] for i in range(len(seq))]
    train, val = split_by_source(samples, TrainConfig.val_fraction, TrainConfig.seed)
    sets = {"real training tiles": [(samples[i].image, samples[i].inst_map) for i in train],
            "real validation tiles": [(samples[i].image, samples[i].inst_map) for i in val]}
    if args.control_blur:
        sets["control: validation, blur σ 1 px"] = [(cv2.GaussianBlur(im, (0, 0), 1.0), inst)
                                                    for im, inst in sets["real validation tiles"]]
    for folder in args.candidates:
        cand = read_dataset(folder, "folder")
        sets[folder.name] = [(cand[i].image, cand[i].inst_map) for i in range(len(cand))]
    stats = {name: set_stats(pairs) for name, pairs in sets.items()}
    train_feats = stats["real training tiles"][0]
    mu, sd = train_feats.mean(0), train_feats.std(0)
    kinds = faiss.Kmeans(train_feats.shape[1], KINDS, niter=25, nredo=4, seed=0)
    kinds.train(((train_feats - mu) / sd).astype(np.float32))

    def kind_of(feats: np.ndarray) -> np.ndarray:
        return kinds.index.search(((feats - mu) / sd).astype(np.float32), 1)[1][:, 0]

    shares = {name: np.bincount(kind_of(f), minlength=KINDS) / len(f) for name, (f, _) in stats.items()}
    train_share = shares["real training tiles"]
    names = list(stats)
    print("| kind: L*, a*, b* mean; L* spread | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for k in np.argsort(-kinds.centroids[:, 3]):
        c = kinds.centroids[k] * sd + mu
        cells = [f"{shares[n][k]:.3f}" if n == "real training tiles" else
                 f"{shares[n][k]:.3f} ({shares[n][k] / max(train_share[k], 1e-9):.2f}×)" for n in names]
        print(f"| {c[0]:.0f}, {c[1]:.0f}, {c[2]:.0f}; {c[3]:.1f} | " + " | ".join(cells) + " |")
    print("\nContrast by nucleus fraction (share of windows / median L* spread / share above "
          f"{HIGH_CONTRAST:.0f}):\n")
    print("| set | nucleus < .05 | .05–.15 | .15–.3 | ≥ .3 | all: share above |")
    print("|---|---|---|---|---|---|")
    for name, (feats, fractions) in stats.items():
        print(contrast_line(name, feats, fractions))


if __name__ == "__main__":
    main()
