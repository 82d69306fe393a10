"""The calibrated realism judge: C2ST comparisons split by source tile, the calibration lines that show
the judge sees what it must rank, and the rule that withholds a verdict when it does not.

A comparison puts real tiles (label 0) against other tiles (label 1). Seed s trains one judge on the
tiles of half the source tiles and scores it on the other half; successive seeds take different
halves (with 4 sources, seeds 0, 1, 2 are the three distinct partitions), so the spread over seeds
includes the source-to-source spread, not only the judge's own.

Calibration lines, all at JUDGE_MPP on real tiles:
- real_vs_real: real tiles against other real tiles of the same sources (alternate tiles of each
  source); the judge learns on some sources and is scored on disjoint ones: must be chance;
- blur_1px: real tiles against themselves blurred with σ = 1 px: must be seen;
- half_res_bicubic: real tiles against themselves area-downsampled 2× (0.5 µm/px) and bicubic-
  upsampled back: the look of a 20× sample upsampled; must be seen;
- train_vs_val: the training split's real tiles against the validation split's: stain and patient
  shift, the floor any generator trained on the training split is measured against (no bar).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from cosyn.evaluation.c2st import C2STConfig, as_acquired, c2st

JUDGE_MPP = 0.25  # the calibration lines' blur and downsampling are defined at 40x
FLOOR_TILES = 64  # training-split tiles of the floor line, drawn across all its sources
FLOOR_MARGIN = 0.05  # issue 25's realism bar: a candidate's AUC at 0.25 µm/px ≤ floor + 0.05


@dataclass(frozen=True)
class Bar:
    low: float | None = None
    high: float | None = None

    def passes(self, auc: float) -> bool:
        return (self.low is None or auc >= self.low) and (self.high is None or auc <= self.high)

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low:g}–{self.high:g}"
        if self.low is not None:
            return f"≥ {self.low:g}"
        return f"≤ {self.high:g}" if self.high is not None else "reported"


CALIBRATION_BARS = {
    "real_vs_real": Bar(0.45, 0.55),
    "blur_1px": Bar(0.95),
    "half_res_bicubic": Bar(0.95),
    "train_vs_val": Bar(),
}
CALIBRATION_TEXT = {
    "real_vs_real": "real vs real, disjoint source tiles",
    "blur_1px": "real vs the same tiles blurred, σ = 1 px at 0.25 µm/px",
    "half_res_bicubic": "real vs real at 0.5 µm/px, bicubic ×2",
    "train_vs_val": "training-split real vs validation real (the floor)",
}


@dataclass(frozen=True)
class View:
    """How both sides are shown to the judge: JPEG-matched at JUDGE_MPP or not, then area-downsampled
    by `factor` (crops shrink with it, so a crop covers the same µm at every factor)."""

    jpeg: bool = True
    factor: int = 1

    @property
    def mpp(self) -> float:
        return JUDGE_MPP * self.factor

    def key(self, cfg: C2STConfig) -> str:
        return f"mpp={self.mpp:g},jpeg={self.jpeg},{cfg.key()}"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        out = as_acquired(image) if self.jpeg else image
        if self.factor == 1:
            return out
        h, w = out.shape[:2]
        return cv2.resize(out, (w // self.factor, h // self.factor), interpolation=cv2.INTER_AREA)


def source_halves(sources: Sequence[str], seed: int) -> tuple[set[str], set[str]]:
    """(fit, score): disjoint halves of the sources. The first source always joins the other half of
    a window that slides with the seed, so consecutive seeds give distinct partitions; odd seeds swap
    the roles."""
    s = sorted(set(sources))
    if len(s) < 2:
        raise ValueError(f"a judge split by source needs at least 2 source tiles, got {s}")
    rest = s[1:]
    fit = {s[0], *(rest[(seed + j) % len(rest)] for j in range(len(s) // 2 - 1))}
    score = set(s) - fit
    return (score, fit) if seed % 2 else (fit, score)


def compare(real: Sequence[np.ndarray], real_sources: Sequence[str], other: Sequence[np.ndarray],
            other_sources: Sequence[str], cfg: C2STConfig, view: View | None = None) -> dict[str, Any]:
    """C2ST AUC of `other` (label 1) against `real` (label 0), one judge per seed of `cfg`, each
    trained on half the source tiles and scored on the rest. When both sides come from the same
    sources (generated from real layouts) they are split together; when their sources are disjoint
    (training split vs validation split) each side is halved on its own."""
    view = view or View()
    shared = set(real_sources) == set(other_sources)
    if not shared and set(real_sources) & set(other_sources):
        raise ValueError("the two sides must share all their source tiles or none")
    real_v, other_v = [view(im) for im in real], [view(im) for im in other]
    seed_cfg = replace(cfg, crop=cfg.crop // view.factor)
    aucs, t0 = [], time.perf_counter()
    for seed in cfg.seeds:
        real_fit, real_score = source_halves(real_sources, seed)
        other_fit, other_score = (real_fit, real_score) if shared else source_halves(other_sources, seed)
        def pick(images: Sequence[np.ndarray], sources: Sequence[str], keep: set[str]) -> list[np.ndarray]:
            return [im for im, s in zip(images, sources, strict=True) if s in keep]
        result = c2st((pick(real_v, real_sources, real_fit), pick(other_v, other_sources, other_fit)),
                      (pick(real_v, real_sources, real_score), pick(other_v, other_sources, other_score)),
                      replace(seed_cfg, seeds=(seed,)))
        aucs.append(result["auc_mean"])
    return {"auc_mean": float(np.mean(aucs)), "auc_std": float(np.std(aucs)), "auc_per_seed": aucs,
            "seconds_per_judge": (time.perf_counter() - t0) / len(aucs), "mpp": view.mpp, "jpeg": view.jpeg}


def blurred(image: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma)


def half_res_bicubic(image: np.ndarray) -> np.ndarray:
    """The image seen at half the resolution (area) and bicubic-upsampled back."""
    h, w = image.shape[:2]
    small = cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def alternate_halves(sources: Sequence[str]) -> tuple[list[int], list[int]]:
    """Indices of alternate tiles within each source (in the given order): two real sets with the
    same sources."""
    seen: dict[str, int] = {}
    halves: tuple[list[int], list[int]] = ([], [])
    for i, s in enumerate(sources):
        halves[seen.get(s, 0) % 2].append(i)
        seen[s] = seen.get(s, 0) + 1
    return halves


def floor_tiles(n_train: int, seed: int = 0) -> list[int]:
    """Indices of the training-split tiles the floor line uses: a seeded draw of FLOOR_TILES."""
    return sorted(int(i) for i in np.random.default_rng(seed).choice(n_train, min(FLOOR_TILES, n_train),
                                                                     replace=False))


def calibration(val: Sequence[np.ndarray], val_sources: Sequence[str], train: Sequence[np.ndarray],
                train_sources: Sequence[str], cfg: C2STConfig, view: View | None = None,
                lines: Sequence[str] = tuple(CALIBRATION_BARS),
                log: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """The calibration lines on real tiles at JUDGE_MPP (`val`, `train`: the validation and training
    splits' images); each row carries its bar and whether it passes (bars hold only at JUDGE_MPP: a
    coarser view reports its lines without them, except real vs real)."""
    view = view or View()
    a, b = alternate_halves(val_sources)
    a = [i for i in a if val_sources[i] in {val_sources[j] for j in b}]  # a source of one tile has no pair
    controls: dict[str, tuple[list[np.ndarray], list[str], list[np.ndarray], list[str]]] = {
        "real_vs_real": ([val[i] for i in a], [val_sources[i] for i in a], [val[i] for i in b],
                         [val_sources[i] for i in b]),
        "blur_1px": (list(val), list(val_sources), [blurred(im) for im in val], list(val_sources)),
        "half_res_bicubic": (list(val), list(val_sources), [half_res_bicubic(im) for im in val], list(val_sources)),
        "train_vs_val": (list(val), list(val_sources), list(train), list(train_sources)),
    }
    out = {}
    for name in lines:
        row = compare(*controls[name], cfg, view)
        bar = CALIBRATION_BARS[name] if view.factor == 1 or name == "real_vs_real" else Bar()
        out[name] = {**row, "bar": str(bar), "pass": bar.passes(row["auc_mean"]), "text": CALIBRATION_TEXT[name]}
        if log:
            log(f"calibration {name} at {view.mpp:g} µm/px, jpeg {view.jpeg}: {row['auc_mean']:.3f} "
                f"± {row['auc_std']:.3f} {row['auc_per_seed']} ({row['seconds_per_judge']:.0f} s per judge)")
    return out


def calibrated(lines: dict[str, dict[str, Any]]) -> bool:
    """True when every calibration line passes its bar (a line without a bar always passes)."""
    return all(row["pass"] for row in lines.values())
