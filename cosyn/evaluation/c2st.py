"""Classifier two-sample test: can a small CNN tell real crops from generated ones?

A held-out ROC AUC of 0.5 means indistinguishable, 1.0 means every crop gives itself away. Train and
test are split by source tile (a generated tile belongs to the source tile its layout came from), so
the judge cannot win by recognising a tile it has seen. Every image a judge sees is first encoded as
JPEG at quality 75 with the standard tables, as the real CoNSeP patches are: otherwise the judge
could key on the absence of JPEG blocking rather than on tissue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
    steps: int = 400
    batch: int = 64
    lr: float = 1e-3
    seeds: tuple[int, ...] = (0, 1, 2)


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


def c2st(first: Sequence[np.ndarray], first_groups: Sequence[str], second: Sequence[np.ndarray],
         second_groups: Sequence[str], cfg: C2STConfig | None = None) -> dict[str, float | list[float]]:
    """Held-out AUC of a judge separating `second` (label 1) from `first` (label 0), per seed.

    Each seed splits the union of groups in half at random; a group's crops from both sets fall on
    the same side. Images are taken as they are: encode them with `as_acquired` first where needed.
    """
    cfg = cfg or C2STConfig()
    groups = sorted(set(first_groups) | set(second_groups))
    if len(groups) < 2:
        raise ValueError("C2ST needs at least two source groups to split train from test")
    data = [(c, 0.0, g) for im, g in zip(first, first_groups, strict=True) for c in crops(im, cfg.crop)]
    data += [(c, 1.0, g) for im, g in zip(second, second_groups, strict=True) for c in crops(im, cfg.crop)]
    x_all, y_all = _tensor([d[0] for d in data]), torch.tensor([d[1] for d in data])
    g_all = np.array([d[2] for d in data])
    aucs = []
    for seed in cfg.seeds:
        order = np.random.default_rng(seed).permutation(groups)
        for attempt in range(100):  # both halves must hold both classes
            train_groups = set(order[: len(groups) // 2])
            is_train = np.isin(g_all, list(train_groups))
            y_tr, y_te = y_all[is_train].numpy(), y_all[~is_train].numpy()
            if 0 < y_tr.mean() < 1 and 0 < y_te.mean() < 1:
                break
            order = np.random.default_rng([seed, attempt]).permutation(groups)
        else:
            raise ValueError("no split by group leaves both classes on both sides")
        scores = _train_and_score(x_all[is_train], y_all[is_train], x_all[~is_train], cfg, seed)
        aucs.append(roc_auc(y_te > 0.5, scores))
    return {"auc_mean": float(np.mean(aucs)), "auc_std": float(np.std(aucs)), "auc_per_seed": aucs,
            "crops": [int((y_all == 0).sum()), int((y_all == 1).sum())]}
