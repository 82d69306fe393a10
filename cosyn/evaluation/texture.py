"""Texture statistics, generated vs real: sharpness (Laplacian variance), the hematoxylin intensity
inside nuclei, and how well the hematoxylin sits where the labels put nuclei (colour deconvolution,
Ruifrok & Johnston, via scikit-image's rgb2hed)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from scipy.stats import wasserstein_distance
from skimage.color import rgb2hed

from cosyn.evaluation.c2st import roc_auc


def laplacian_variance(image: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image in [0, 1]: high for crisp edges and chromatin."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    return float(cv2.Laplacian(grey, cv2.CV_32F, ksize=3).var())


def laplacian_ratio(generated: Sequence[np.ndarray], real: Sequence[np.ndarray]) -> float:
    """Median Laplacian variance of the generated images over that of the real ones (1 = as sharp)."""
    return float(np.median([laplacian_variance(g) for g in generated])
                 / np.median([laplacian_variance(r) for r in real]))


def nuclear_hematoxylin(images: Sequence[np.ndarray], nucleus_masks: Sequence[np.ndarray]) -> np.ndarray:
    """The hematoxylin optical density of every nucleus pixel of the images."""
    values = [rgb2hed(im)[..., 0][mask] for im, mask in zip(images, nucleus_masks, strict=True)]
    return np.concatenate(values) if values else np.zeros(0)


def hematoxylin_distance(generated: Sequence[np.ndarray], generated_masks: Sequence[np.ndarray],
                         real: Sequence[np.ndarray], real_masks: Sequence[np.ndarray]) -> float:
    """Wasserstein-1 distance between the nuclear hematoxylin densities of the two sets."""
    g, r = nuclear_hematoxylin(generated, generated_masks), nuclear_hematoxylin(real, real_masks)
    if not len(g) or not len(r):
        raise ValueError("no nucleus pixels to compare")
    return float(wasserstein_distance(g, r))


def hematoxylin_auc(image: np.ndarray, nucleus_mask: np.ndarray) -> float:
    """Label–image agreement of one tile: the ROC AUC of the hematoxylin optical density for nucleus
    pixels against all other pixels (1: every nucleus pixel is darker in hematoxylin than every other
    pixel; 0.5: the labels say nothing about where the stain is). nan for a tile without both."""
    mask = np.asarray(nucleus_mask, bool)
    if mask.all() or not mask.any():
        return float("nan")
    return roc_auc(mask.ravel(), rgb2hed(image)[..., 0].ravel())


def median_hematoxylin_auc(images: Sequence[np.ndarray], nucleus_masks: Sequence[np.ndarray]) -> float:
    """The median over tiles of `hematoxylin_auc` (tiles without nuclei are left out)."""
    values = [hematoxylin_auc(im, m) for im, m in zip(images, nucleus_masks, strict=True)]
    finite = [v for v in values if np.isfinite(v)]
    return float(np.median(finite)) if finite else float("nan")
