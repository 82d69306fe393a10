"""Classifier two-sample test: can a small CNN tell real crops from other ones?

A held-out ROC AUC of 0.5 means indistinguishable, 1.0 means every crop gives itself away. The
caller splits train and test by source tile (cosyn.evaluation.judge does), so the judge cannot win by
recognising a tile it has seen.

The recipe, and why (docs/realism_judge.md has the calibration that backs it):
- batch-normalised conv stages at full resolution first: blur and missing chromatin detail live in
  the first octave, which an unnormalised judge on few steps never learned to see (the old judge
  scored real vs real-at-0.5-µm/px-upsampled 0.53);
- training crops at random positions on the 8-px JPEG grid, each in one of the 8 dihedral poses, and
  nothing else: colour or blur augmentation would teach the judge to ignore what it must see;
- JPEG matching is the caller's (`as_acquired`, applied at 0.25 µm/px by cosyn.evaluation.judge);
- one judge per seed, each trained from scratch; the caller reports mean ± sd and every seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import nn

JPEG_QUALITY = 75
JPEG_BLOCK = 8  # crops start on this grid, so every crop sees whole JPEG blocks


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


def _stage(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Judge(nn.Module):
    """Six conv + batch-norm stages (three at stride 2), then mean and standard-deviation pooling:
    texture statistics of the crop, whatever its size."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = [width, width, 2 * width, 2 * width, 4 * width, 4 * width]
        strides = [1, 2, 1, 2, 1, 2]
        self.features = nn.Sequential(*(_stage(a, b, s) for a, b, s in zip([3, *w[:-1]], w, strides, strict=True)))
        self.fc = nn.Linear(2 * w[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.fc(torch.cat([x.mean((2, 3)), x.std((2, 3), correction=0)], 1))[:, 0]


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


def _tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _random_crops(tiles: torch.Tensor, idx: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """One size² crop per index, at a random position on the JPEG grid, in a random dihedral pose."""
    h, w = tiles.shape[2:]
    ny, nx = (h - size) // JPEG_BLOCK + 1, (w - size) // JPEG_BLOCK + 1
    ys = torch.randint(0, ny, (len(idx),), generator=gen) * JPEG_BLOCK
    xs = torch.randint(0, nx, (len(idx),), generator=gen) * JPEG_BLOCK
    poses = torch.randint(0, 8, (len(idx),), generator=gen)
    out = []
    for i, y, x, k in zip(idx.tolist(), ys.tolist(), xs.tolist(), poses.tolist(), strict=True):
        c = torch.rot90(tiles[i, :, y:y + size, x:x + size], k % 4, (1, 2))  # orientation carries no information
        out.append(c.flip(2) if k >= 4 else c)
    return torch.stack(out)


def _train_and_score(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, cfg: C2STConfig,
                     seed: int) -> np.ndarray:
    torch.manual_seed(seed)
    judge = Judge(cfg.width)
    opt = torch.optim.Adam(judge.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    # balanced batches: half of each class, whatever the set sizes
    by_class = [torch.nonzero(y_train == c)[:, 0] for c in (0, 1)]
    half = cfg.batch // 2
    for _ in range(cfg.steps):
        idx = torch.cat([pool[torch.randint(0, len(pool), (half,), generator=gen)] for pool in by_class])
        loss = F.binary_cross_entropy_with_logits(judge(_random_crops(x_train, idx, cfg.crop, gen)), y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    judge.eval()
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
    x_train, x_test = _tensor(train_images), _tensor([c for cs in test_crops for c in cs])
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
