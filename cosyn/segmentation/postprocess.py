"""HoVer-Net's post-processing (Graham et al. 2019, `process_np_hv`), from MONAI's pathology transforms.

Foreground = argmax of the NP branch; the Sobel gradients of the min-max normalised HV maps are
high between nuclei; markers are the foreground where that gradient energy is below the marker
threshold (holes filled, opened with a disk of radius 2, small ones dropped); a marker-controlled
watershed of the smoothed energy inside the foreground gives the instances. Each instance then
takes the majority nucleus class of its pixels in the NC branch. With `keep_unmarked`, foreground
that no marker reaches becomes nuclei of its own instead of being dropped.
"""

from __future__ import annotations

import numpy as np
from monai.apps.pathology.transforms.post.array import (
    GenerateDistanceMap,
    GenerateInstanceBorder,
    GenerateWatershedMarkers,
    GenerateWatershedMask,
    Watershed,
)
from scipy import ndimage as ndi
from skimage.segmentation import relabel_sequential

from cosyn.core.instances import instance_table
from cosyn.segmentation.config import SegmenterConfig


def instance_map(np_logits: np.ndarray, hv: np.ndarray, config: SegmenterConfig) -> np.ndarray:
    """NP logits (2, H, W) and HV maps (2, H, W) → int32 instance map, ids 1..N."""
    min_size = max(1, round(config.min_area_um2 / config.mpp**2))
    mask = GenerateWatershedMask(activation="softmax", threshold=None, min_object_size=min_size)(np_logits)
    if not np.any(mask):
        return np.zeros(np_logits.shape[1:], np.int32)
    border = GenerateInstanceBorder(kernel_size=config.sobel_kernel)(mask, hv)
    energy = GenerateDistanceMap()(mask, border)
    markers = GenerateWatershedMarkers(threshold=config.marker_threshold, radius=2, min_object_size=min_size)(
        mask, border)
    inst = np.asarray(Watershed(connectivity=1, dtype=np.int32)(energy, mask, markers))[0].astype(np.int32)
    if config.keep_unmarked:
        # Foreground blobs without a marker (soft HV maps leave small or flat nuclei unmarked) are
        # nuclei of their own instead of being dropped.
        orphans, _ = ndi.label((np.asarray(mask)[0] > 0) & (inst == 0))
        inst = np.where(orphans > 0, orphans + inst.max(), inst)
        sizes = np.bincount(inst.ravel())
        inst[sizes[inst] < min_size] = 0
    return relabel_sequential(inst)[0]


def instance_classes(inst: np.ndarray, nc_probs: np.ndarray) -> dict[int, int]:
    """Majority nucleus class (1..K-1) of each instance's pixels under the NC branch's argmax."""
    type_map = np.where(inst > 0, nc_probs[1:].argmax(0) + 1, 0).astype(np.uint8)
    ids, _, majority = instance_table(inst, type_map)
    return dict(zip(ids.tolist(), majority.tolist(), strict=True))
