"""Classifier two-sample test: can a small CNN tell real crops from other ones?

A held-out ROC AUC of 0.5 means indistinguishable, 1.0 means every crop gives itself away. The
caller splits train and test by source tile (cosyn.evaluation.judge does), so the judge cannot win by
recognising a tile it has seen.

The judge is cosyn.stages.classifier's network and training recipe (docs/realism_judge.md has the
calibration that backs it; an unnormalised judge on few steps never learned to see blur: the old judge
scored real vs real-at-0.5-µm/px-upsampled 0.53). Here:
- JPEG matching is the caller's (`as_acquired`, applied at 0.25 µm/px by cosyn.evaluation.judge);
- one judge per seed, each trained from scratch; the caller reports mean ± sd and every seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata

from cosyn.stages.classifier import crops, fit_classifier, images_tensor


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the Mann–Whitney U statistic (ties count half)."""
    labels = np.asarray(labels, bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both classes in the test set")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass(frozen=True)
class C2STConfig:
    crop: int = 64
    steps: int = 300
    batch: int = 32
    lr: float = 2e-3
    width: int = 16
    seeds: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self) -> None:
        if self.crop < 8 or self.steps < 1 or self.batch < 2 or self.width < 1 or not self.seeds:
            raise ValueError(f"C2ST needs crop >= 8, steps >= 1, batch >= 2, width >= 1 and a seed (got {self})")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"C2ST lr must be a finite number > 0, not {self.lr}")

    def key(self) -> str:
        """The settings as a stable string: cached results are valid only for the same key."""
        return ",".join(f"{k}={v}" for k, v in asdict(self).items())


def _train_and_score(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, cfg: C2STConfig,
                     seed: int) -> np.ndarray:
    judge = fit_classifier(x_train, y_train, crop=cfg.crop, steps=cfg.steps, batch=cfg.batch, lr=cfg.lr,
                           width=cfg.width, seed=seed)
    with torch.no_grad():
        return torch.cat([judge(x_test[i:i + 256]) for i in range(0, len(x_test), 256)]).numpy()


def c2st(train: tuple[Sequence[np.ndarray], Sequence[np.ndarray]],
         test: tuple[Sequence[np.ndarray], Sequence[np.ndarray]], cfg: C2STConfig | None = None) -> dict[str, Any]:
    """Held-out AUC of a judge trained to tell train[1] (label 1, e.g. generated) from train[0] (label 0,
    real), scored on the non-overlapping crops of test[1] against those of test[0]; one judge per seed.

    The caller keeps the source tiles of `train` and `test` disjoint (the judge must not win by
    recognising a tile it has seen). Images of one call share one size.
    """
    cfg = cfg or C2STConfig()
    train_images, y_train = _joined(train)
    if min(train_images[0].shape[:2]) < cfg.crop:
        raise ValueError(f"C2ST needs images of at least {cfg.crop}² px, got {train_images[0].shape[:2]}")
    test_images, y_test = _joined(test)
    test_crops = [crops(im, cfg.crop) for im in test_images]
    x_train, x_test = images_tensor(train_images), images_tensor([c for cs in test_crops for c in cs])
    y_test = y_test.repeat_interleave(torch.tensor([len(cs) for cs in test_crops]))
    aucs = [roc_auc(y_test.numpy() > 0.5, _train_and_score(x_train, y_train, x_test, cfg, seed))
            for seed in cfg.seeds]
    return {"auc_mean": float(np.mean(aucs)), "auc_std": float(np.std(aucs)), "auc_per_seed": aucs,
            "tiles_train": len(y_train), "crops_test": len(y_test)}


def _joined(sets: tuple[Sequence[np.ndarray], Sequence[np.ndarray]]) -> tuple[list[np.ndarray], torch.Tensor]:
    """Both sets' images in one list, and their labels."""
    if not sets[0] or not sets[1]:
        raise ValueError("C2ST needs images of both sets")
    return [*sets[0], *sets[1]], torch.cat([torch.zeros(len(sets[0])), torch.ones(len(sets[1]))])
