"""Classifier two-sample test: can a small CNN tell real crops from generated ones?

A held-out ROC AUC of 0.5 means indistinguishable, 1.0 means every crop gives itself away. Train and
test are split by source tile (a generated tile belongs to the source tile its layout came from), so
the judge cannot win by recognising a tile it has seen: in the benchmark it learns on tiles of the
training split's source tiles and is scored on the validation split's. Every image a judge sees is first encoded as
JPEG at quality 75 with the standard tables, as the real CoNSeP patches are: otherwise the judge
could key on the absence of JPEG blocking rather than on tissue.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import nn

JPEG_QUALITY = 75


def as_acquired(image: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    """An RGB uint8 image after a JPEG round trip at `quality` (OpenCV's libjpeg, standard tables)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def crops(image: np.ndarray, size: int) -> list[np.ndarray]:
    """The non-overlapping size² crops of an image (a remainder at the edges is dropped)."""
    h, w = image.shape[:2]
    return [image[y:y + size, x:x + size] for y in range(0, h - size + 1, size) for x in range(0, w - size + 1, size)]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the Mann–Whitney U statistic (ties count half)."""
    labels = np.asarray(labels, bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both classes in the test set")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


class Judge(nn.Module):
    """A small CNN: four conv stages, then mean and standard deviation pooling (texture statistics)."""

    def __init__(self, width: int = 24) -> None:
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 4 * width]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(chans, chans[1:], strict=False))
        self.fc = nn.Linear(2 * chans[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            x = F.leaky_relu(conv(x), 0.2)
            if i < len(self.convs) - 1:
                x = F.avg_pool2d(x, 2)
        return self.fc(torch.cat([x.mean((2, 3)), x.std((2, 3))], 1))[:, 0]


@dataclass
class C2STConfig:
    crop: int = 64
    steps: int = 500
    batch: int = 32
    lr: float = 5e-4
    seeds: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self) -> None:
        if self.crop < 8 or self.steps < 1 or self.batch < 2 or not self.seeds:
            raise ValueError(f"C2ST needs crop >= 8, steps >= 1, batch >= 2 and a seed (got {self})")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"C2ST lr must be a finite number > 0, not {self.lr}")


def _tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _train_and_score(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, cfg: C2STConfig,
                     seed: int) -> np.ndarray:
    torch.manual_seed(seed)
    judge = Judge()
    opt = torch.optim.Adam(judge.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(cfg.steps):
        idx = torch.randint(0, len(x_train), (cfg.batch,), generator=gen)
        x = x_train[idx]
        k = int(torch.randint(0, 4, (1,), generator=gen))
        x = torch.rot90(x, k, (2, 3))  # orientation carries no information in tissue
        if torch.rand(1, generator=gen) < 0.5:
            x = x.flip(3)
        loss = F.binary_cross_entropy_with_logits(judge(x), y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    judge.eval()
    with torch.no_grad():
        return torch.cat([judge(x_test[i:i + 256]) for i in range(0, len(x_test), 256)]).numpy()


def c2st(train: tuple[Sequence[np.ndarray], Sequence[np.ndarray]],
         test: tuple[Sequence[np.ndarray], Sequence[np.ndarray]], cfg: C2STConfig | None = None) -> dict[str, Any]:
    """Held-out AUC of a judge trained to tell train[1] (label 1, e.g. generated) from train[0] (label 0,
    real), scored on test[1] against test[0]; one judge per seed.

    The caller keeps the source tiles of `train` and `test` disjoint (the judge must not win by
    recognising a tile it has seen) and encodes images with `as_acquired` where needed.
    """
    cfg = cfg or C2STConfig()
    x_train, y_train = _labelled(train, cfg.crop)
    x_test, y_test = _labelled(test, cfg.crop)
    aucs = [roc_auc(y_test.numpy() > 0.5, _train_and_score(x_train, y_train, x_test, cfg, seed))
            for seed in cfg.seeds]
    return {"auc_mean": float(np.mean(aucs)), "auc_std": float(np.std(aucs)), "auc_per_seed": aucs,
            "crops_train": len(y_train), "crops_test": len(y_test)}


def _labelled(sets: tuple[Sequence[np.ndarray], Sequence[np.ndarray]], crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    pieces = [[c for im in images for c in crops(im, crop)] for images in sets]
    if not pieces[0] or not pieces[1]:
        raise ValueError(f"C2ST needs {crop}² crops of both sets")
    labels = torch.cat([torch.zeros(len(pieces[0])), torch.ones(len(pieces[1]))])
    return _tensor(pieces[0] + pieces[1]), labels
