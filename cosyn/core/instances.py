"""Instance maps and their tables: the table (ids, centroids, majority classes) of any instance map, and
the instances cut from a generated (distance map, label map) pair, seeded by the layout's centroids.

CoSyn's point-guided watershed: every layout centroid is a marker, the landscape is the
negated distance map, and the flood is confined to the nucleus foreground. It beats
connected components and distance-peak watershed (docs/model.md) because the layout already
says how many nuclei a blob holds and where they are.

Decisions, so that callers can rely on them:

- Foreground is `class_map > 0` OR `dist_map > fg_threshold`. The two maps are sampled
  jointly but can disagree by a pixel or two at nucleus borders, or drop a faint nucleus
  in one of them; the union keeps a nucleus that either map sees. The threshold is well
  above the background noise of a generated distance map, so the distance map only adds
  confident nucleus pixels.
- A centroid on a background pixel snaps to the nearest foreground pixel within
  `snap_radius`; farther away it is *missed* (the model drew no nucleus there). Two
  centroids on one pixel give one instance; the second is missed.
- Foreground components that no centroid reaches are nuclei the model drew unprompted.
  They are kept, split by distance-map peaks, and counted as `unprompted`: dropping them
  would leave visible nuclei unlabelled in the image. Specks under `min_area` pixels among
  them are noise and stay background.
- Without a layout (`points_xy is None`) every instance comes from distance peaks, so all
  are unprompted.
- Instance ids: prompted instances are 1..K in layout order, unprompted ones K+1..K+U.
  The map is int32, so tiles with more than 65535 nuclei are fine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.segmentation import watershed

FG_THRESHOLD = 0.3
SNAP_RADIUS = 2.0
PEAK_MIN_DISTANCE = 3
MIN_UNPROMPTED_AREA = 8


def instance_table(
    inst_map: np.ndarray, class_map: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ids, centroids (x, y) and majority classes of the instances of `inst_map`.

    Vectorised over all instances with bincount, so tiles with tens of thousands of
    nuclei stay fast; ids may exceed 65535.
    """
    flat = inst_map.ravel().astype(np.int64)
    ids, inverse = np.unique(flat, return_inverse=True)
    keep = ids != 0
    n_all = len(ids)
    counts = np.bincount(inverse, minlength=n_all).astype(np.float64)
    rows, cols = np.indices(inst_map.shape)
    sum_x = np.bincount(inverse, weights=cols.ravel(), minlength=n_all)
    sum_y = np.bincount(inverse, weights=rows.ravel(), minlength=n_all)
    centroids = np.stack([sum_x / np.maximum(counts, 1), sum_y / np.maximum(counts, 1)], axis=1)
    n_cls = int(class_map.max()) + 1 if class_map.size else 1
    joint = np.bincount(inverse * n_cls + class_map.ravel().astype(np.int64), minlength=n_all * n_cls)
    joint = joint.reshape(n_all, n_cls)
    fg = joint[:, 1:] if n_cls > 1 else np.zeros((n_all, 0))
    majority = (np.argmax(fg, axis=1) + 1) if fg.shape[1] else np.zeros(n_all, dtype=np.int64)
    majority = np.where(fg.sum(axis=1) > 0, majority, 0) if fg.shape[1] else majority
    return ids[keep].astype(np.int32), centroids[keep], majority[keep].astype(np.int32)


def paint_classes(inst_map: np.ndarray, inst_classes: dict[int, int]) -> np.ndarray:
    """(H, W) uint8 class map in which every instance carries its one class; 0 elsewhere."""
    lut = np.zeros(int(inst_map.max(initial=0)) + 1, np.uint8)
    for i, c in inst_classes.items():
        lut[int(i)] = c
    return lut[inst_map]



@dataclass
class InstanceResult:
    """- inst_map: (H, W) int32, 0 = background
    - inst_classes: {instance id: class id}
    - point_inst: (N,) int32, the instance each centroid lies in (0 when missed in background)
    - missed: indices of centroids that yielded no instance of their own
    - unprompted: number of instances no centroid seeded (their ids follow the prompted ones)
    """

    inst_map: np.ndarray
    inst_classes: dict[int, int]
    point_inst: np.ndarray
    missed: list[int]
    unprompted: int

    @property
    def num_instances(self) -> int:
        return len(self.inst_classes)


def cut_instances(
    dist_map: np.ndarray,
    class_map: np.ndarray,
    points_xy: np.ndarray | None = None,
    point_classes: np.ndarray | None = None,
    fg_threshold: float = FG_THRESHOLD,
    snap_radius: float = SNAP_RADIUS,
    min_area: int = MIN_UNPROMPTED_AREA,
) -> InstanceResult:
    """Cut the foreground of (dist_map, class_map) into instances seeded at `points_xy`.

    `points_xy` is (N, 2) of (x = column, y = row); `point_classes` (N,) class ids are
    only used for an instance whose pixels carry no nucleus class in `class_map`.
    """
    dist = np.asarray(dist_map, dtype=np.float32)
    class_map = np.asarray(class_map)
    if dist.ndim != 2 or dist.shape != class_map.shape:
        raise ValueError(f"dist_map {dist.shape} and class_map {class_map.shape} must be equal 2-D shapes")
    fg = (class_map > 0) | (dist > fg_threshold)

    xy = np.zeros((0, 2)) if points_xy is None else _check_points(points_xy, dist.shape)
    markers, point_inst, missed = _point_markers(xy, fg, snap_radius)
    n_prompted = int(markers.max(initial=0))
    labels = watershed(-dist, markers, mask=fg) if n_prompted else np.zeros(dist.shape, np.int32)

    leftover = fg & (labels == 0)
    extra = _peak_instances(dist, leftover, min_area, fg_threshold)
    labels = np.where(extra > 0, extra + n_prompted, labels).astype(np.int32)

    classes = _instance_classes(labels, class_map, point_inst, point_classes)
    return InstanceResult(labels, classes, point_inst, missed, int(extra.max(initial=0)))


def _check_points(points_xy: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    xy = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    h, w = shape
    inside = np.isfinite(xy).all(axis=1) & (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    if not inside.all():
        i = int(np.argmin(inside))
        raise ValueError(f"point {i} at {tuple(xy[i])} lies outside the {w}x{h} map")
    return xy


def _point_markers(xy: np.ndarray, fg: np.ndarray, snap_radius: float) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Marker image (ids 1..K in point order), per-point instance id and missed indices."""
    h, w = fg.shape
    markers = np.zeros(fg.shape, np.int32)
    point_inst = np.zeros(len(xy), np.int32)
    if not len(xy):
        return markers, point_inst, []
    # the same pixel as the model's point map (cosyn.data.targets.point_map): round half up
    rows = np.clip(np.floor(xy[:, 1] + 0.5).astype(np.int64), 0, h - 1)
    cols = np.clip(np.floor(xy[:, 0] + 0.5).astype(np.int64), 0, w - 1)
    if fg.any():
        # One EDT gives every background pixel its nearest foreground pixel.
        gap, (near_r, near_c) = ndi.distance_transform_edt(~fg, return_indices=True)
        ok = gap[rows, cols] <= snap_radius
        rows, cols = near_r[rows, cols], near_c[rows, cols]
    else:
        ok = np.zeros(len(xy), bool)
    missed = []
    next_id = 1
    for i in range(len(xy)):
        if not ok[i]:
            missed.append(i)
        elif markers[rows[i], cols[i]]:
            missed.append(i)  # shares a pixel with an earlier centroid
        else:
            markers[rows[i], cols[i]] = next_id
            next_id += 1
        point_inst[i] = markers[rows[i], cols[i]] if ok[i] else 0
    return markers, point_inst, missed


def _peak_instances(dist: np.ndarray, mask: np.ndarray, min_area: int, threshold: float) -> np.ndarray:
    """Distance-peak watershed of `mask`, ids 1..U; components under `min_area` px dropped."""
    comps, n = ndi.label(mask)
    if n == 0:
        return np.zeros(mask.shape, np.int32)
    sizes = np.bincount(comps.ravel(), minlength=n + 1)
    keep = sizes >= min_area
    keep[0] = False
    mask = keep[comps]
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    # Smoothing merges the ragged double peaks a sampled distance map has inside one nucleus.
    smooth = np.where(mask, ndi.gaussian_filter(dist, 1.0), 0.0)
    peaks = peak_local_max(smooth, min_distance=PEAK_MIN_DISTANCE, threshold_abs=threshold, exclude_border=False)
    peaks = peaks[mask[peaks[:, 0], peaks[:, 1]]]
    seeded = np.zeros(n + 1, bool)
    seeded[comps[peaks[:, 0], peaks[:, 1]]] = True
    # A faint or flat component has no peak above threshold; its maximum seeds it.
    unseeded = np.flatnonzero(keep & ~seeded)
    extra = np.array(ndi.maximum_position(smooth, comps, unseeded), dtype=np.int64).reshape(-1, 2)
    seeds = np.concatenate([peaks.reshape(-1, 2), extra])
    markers = np.zeros(mask.shape, np.int32)
    markers[seeds[:, 0], seeds[:, 1]] = np.arange(1, len(seeds) + 1, dtype=np.int32)
    return watershed(-smooth, markers, mask=mask).astype(np.int32)


def _instance_classes(
    inst_map: np.ndarray, class_map: np.ndarray, point_inst: np.ndarray, point_classes: np.ndarray | None
) -> dict[int, int]:
    """Majority nucleus class under each instance.

    An instance with no nucleus-class pixel (it came from the distance map alone) takes
    its centroid's class if a layout point seeded it, else the class of the nearest
    labelled pixels; it stays 0 only when the class map has no nucleus pixel at all.
    """
    ids, _, majority = instance_table(inst_map, class_map)
    classes = dict(zip(ids.tolist(), majority.tolist(), strict=True))
    if point_classes is not None:
        pc = np.asarray(point_classes).reshape(-1)
        if len(pc) != len(point_inst):
            raise ValueError(f"{len(pc)} point classes for {len(point_inst)} points")
        unclassed = {k for k, c in classes.items() if c == 0}
        for i in np.flatnonzero(point_inst > 0):
            k = int(point_inst[i])
            if k in unclassed:  # the first centroid of an instance decides
                classes[k] = int(pc[i])
                unclassed.discard(k)
    if 0 in classes.values() and (class_map > 0).any():
        _, (near_r, near_c) = ndi.distance_transform_edt(class_map == 0, return_indices=True)
        _, _, nearest = instance_table(inst_map, class_map[near_r, near_c])
        for k, c in zip(ids.tolist(), nearest.tolist(), strict=True):
            if classes[k] == 0:
                classes[k] = c
    return classes
