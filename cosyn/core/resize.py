"""Resizing label maps and images between resolutions (µm per pixel)."""

from __future__ import annotations

import cv2
import numpy as np


def nearest_resize(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize by pixel centres; safe for int32 ids of any magnitude."""
    rows = np.minimum(((np.arange(height) + 0.5) * arr.shape[0] / height).astype(np.int64), arr.shape[0] - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * arr.shape[1] / width).astype(np.int64), arr.shape[1] - 1)
    return arr[rows][:, cols]


def area_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """An RGB image resized by area averaging when it shrinks, bicubic when it grows."""
    if image.shape[:2] == (height, width):
        return image
    interp = cv2.INTER_AREA if height < image.shape[0] else cv2.INTER_CUBIC
    return cv2.resize(image, (width, height), interpolation=interp)


def linear_resize(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a float map (e.g. the nucleus distance map)."""
    if arr.shape[:2] == (height, width):
        return arr
    return cv2.resize(arr, (width, height), interpolation=cv2.INTER_LINEAR)
