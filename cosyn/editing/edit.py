"""Edit a real annotated tile: add, remove, move or reclassify nuclei, regenerate only around them.

1. The region: the user's mask, or discs of `margin_um` around every centroid the edit changed (old and
   new positions), grown to whole real nuclei, so no nucleus is cut in two.
2. The base model samples the edited layout with everything outside the region held to the real tile
   (KnownRegion), at its own µm/px; the triple is then resampled once to the tile's canvas
   (cosyn.core.resample.at_mpp).
3. Composite at the tile's resolution: outside the region the image, labels, instances and distance
   map are the tile's own, byte for byte; inside, the generated ones, the image blended over a
   `feather_px` band just inside the border; new instances take ids above the tile's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from cosyn.core.layout import Layout, LayoutError
from cosyn.core.maps import distance_map
from cosyn.core.resample import at_mpp, resample_distance, resample_image, resample_instances, resample_labels
from cosyn.core.triple import Triple
from cosyn.data.dataset import resample_sample
from cosyn.data.sample import Sample
from cosyn.data.targets import layout_from_sample
from cosyn.model.known import KnownRegion
from cosyn.model.pipeline import CoSynPipeline
from cosyn.model.settings import SamplingSettings
from cosyn.stages.base import TileEditingStage

MARGIN_UM = 8.0  # around a changed centroid: a nucleus and its immediate surroundings
MOVED_PX = 1.0  # a centroid that moved less than this (and kept its class) is unchanged


class EditError(LayoutError):
    """An edit that cannot be made; the message says why."""


def changed_positions(before: Layout, after: Layout, tolerance: float = MOVED_PX) -> np.ndarray:
    """(M, 2) positions of every centroid the edit added, removed, moved or reclassified (old and new)."""
    xy_a, xy_b = before.xy(), after.xy()
    cls_a, cls_b = ([p.cls.strip().lower() for p in lay.points] for lay in (before, after))
    kept_a, kept_b = np.zeros(len(xy_a), bool), np.zeros(len(xy_b), bool)
    if len(xy_a) and len(xy_b):
        dist, idx = cKDTree(xy_a).query(xy_b, distance_upper_bound=tolerance)
        for j, (d, i) in enumerate(zip(dist, idx, strict=True)):
            if np.isfinite(d) and not kept_a[i] and cls_a[i] == cls_b[j]:
                kept_a[i] = kept_b[j] = True
    return np.concatenate([xy_a[~kept_a], xy_b[~kept_b]]).reshape(-1, 2)


def region_around(positions: np.ndarray, shape: tuple[int, int], radius_px: float) -> np.ndarray:
    """(h, w) bool: discs of `radius_px` around `positions`."""
    yy, xx = np.indices(shape)
    mask = np.zeros(shape, bool)
    for x, y in positions:
        mask |= (xx - x) ** 2 + (yy - y) ** 2 <= radius_px**2
    return mask


def grown_to_instances(mask: np.ndarray, inst_map: np.ndarray) -> np.ndarray:
    """`mask` plus every instance it touches, whole."""
    touched = np.unique(inst_map[mask])
    return mask | np.isin(inst_map, touched[touched > 0])


def edit_tile(pipe: CoSynPipeline, tile: Sample, edited: Layout, mask: np.ndarray | None = None,
              settings: SamplingSettings | None = None, margin_um: float = MARGIN_UM,
              feather_px: int = 3, on_step: Callable | None = None, canvas: Layout | None = None) -> Triple:
    """The tile with the region of `edited`'s changes regenerated (module docstring); `on_step` as in
    `CoSynPipeline.sample` (previews; returning False cancels); `canvas` is `pipe.conform_layout(edited)`
    when the caller has it already (a studio request conforms once, to check its caps)."""
    if (edited.width, edited.height) != (tile.width, tile.height):
        raise EditError(f"the edited layout is {edited.width}x{edited.height} px, the tile {tile.width}x{tile.height}")
    if tile.mpp is None or edited.mpp is None or abs(edited.mpp - tile.mpp) > 1e-6 * tile.mpp:
        raise EditError(f"the edited layout is at {edited.mpp} µm/px, the tile at {tile.mpp}: give both the same")
    original = layout_from_sample(tile)
    if mask is None:
        changed = changed_positions(original, edited)
        if not len(changed):
            raise EditError("the edited layout changes no nucleus of the tile: nothing to regenerate")
        mask = region_around(changed, (tile.height, tile.width), margin_um / tile.mpp)
    elif mask.shape != (tile.height, tile.width):
        raise EditError(f"the mask is {mask.shape[1]}x{mask.shape[0]} px, the tile {tile.width}x{tile.height}")
    mask = grown_to_instances(np.asarray(mask, bool), tile.inst_map)
    if not mask.any():
        raise EditError("the mask is empty: nothing to regenerate")
    canvas = pipe.conform_layout(edited) if canvas is None else canvas
    generated = _sample_with_context(pipe, tile, edited, canvas, mask, settings or SamplingSettings(), on_step)
    return composite(tile, generated, mask, edited, feather_px)


def _sample_with_context(pipe: CoSynPipeline, tile: Sample, edited: Layout, canvas: Layout, mask: np.ndarray,
                         settings: SamplingSettings, on_step: Callable | None) -> Triple:
    """One triple of `edited` (conformed to the model as `canvas`), held to the tile outside `mask`, at the
    tile's size."""
    h, w = canvas.height, canvas.width
    lo = resample_sample(tile, pipe.config.mpp)
    known = KnownRegion(image=resample_image(lo.image, h, w), dist=resample_distance(distance_map(lo.inst_map), h, w),
                        class_map=resample_labels(lo.class_map, h, w),
                        regenerate=resample_image(mask.astype(np.float32), h, w) > 0)
    stage = pipe.second_stage
    if isinstance(stage, TileEditingStage) and abs(stage.native_mpp - tile.mpp) < 1e-6 * tile.mpp:
        # the base model only says how big each new nucleus is; the stage puts real ones into the tile's tissue
        base = pipe.sample(edited, settings=settings.with_(n=1, refine=False), canvas=canvas, known=known,
                           on_step=on_step)[0]
        out = stage.into_tile(tile.image, tile.inst_map, mask, edited,
                              resample_instances(base.inst_map, tile.height, tile.width), settings.seed)
        out.params = {**base.params, **out.params}
        return out
    triple = pipe.sample(edited, settings=settings.with_(n=1), canvas=canvas, known=known, on_step=on_step)[0]
    # once, to the tile's own canvas (the model's canvas is rounded to the UNet stride)
    return at_mpp(triple, tile.mpp, size=(tile.height, tile.width))


def composite(tile: Sample, generated: Triple, mask: np.ndarray, edited: Layout, feather_px: int = 3) -> Triple:
    """Tile outside `mask`, generated inside (image feathered over `feather_px` inside the border)."""
    alpha = np.clip(ndimage.distance_transform_edt(mask) / max(feather_px, 1), 0, 1)[..., None]
    image = np.where(mask[..., None], np.round(alpha * generated.image + (1 - alpha) * tile.image), tile.image)
    inst = np.where(mask, 0, tile.inst_map).astype(np.int32)
    kept = set(np.unique(inst).tolist()) - {0}
    inst_classes = {int(i): int(c) for i, c in zip(tile.inst_ids, tile.inst_classes, strict=True) if int(i) in kept}
    next_id = int(tile.inst_map.max(initial=0)) + 1
    added = 0
    for gid, cls in sorted(generated.inst_classes.items()):
        inside = (generated.inst_map == gid) & mask
        if inside.any():
            inst[inside] = next_id
            inst_classes[next_id] = int(cls)
            next_id, added = next_id + 1, added + 1
    class_map = np.where(mask, generated.class_map, tile.class_map).astype(np.uint8)
    dist = np.where(mask, generated.dist_map, distance_map(tile.inst_map)).astype(np.float32)
    params = {**generated.params, "edit": {"source_tile": tile.name, "region_pixels": int(mask.sum()),
                                           "kept_instances": len(kept), "new_instances": added,
                                           "feather_px": feather_px}}
    return Triple(image.astype(np.uint8), class_map, inst, dist, inst_classes, edited, params)
