"""Pictures of a result for the result panels: image, label overlay, contours, distance map."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cosyn.core.classes import ClassSet
from cosyn.core.instances import cut_instances
from cosyn.core.layout import Layout
from cosyn.core.triple import Triple
from cosyn.core.visual import instance_contours, overlay_label
from cosyn.model.pipeline import StepPreview


@dataclass
class Views:
    image: np.ndarray
    overlay: np.ndarray
    contours: np.ndarray
    dist: np.ndarray

    @property
    def pictures(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """In the order of the result panels."""
        return self.image, self.overlay, self.contours, self.dist


def _dist_rgb(dist: np.ndarray) -> np.ndarray:
    grey = (np.clip(dist, 0, 1) * 255).round().astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def views(image: np.ndarray, class_map: np.ndarray, inst_map: np.ndarray, dist: np.ndarray,
          inst_classes: dict[int, int], classes: ClassSet, opacity: float) -> Views:
    return Views(image, overlay_label(image, class_map, classes, opacity),
                 instance_contours(image, inst_map, inst_classes, classes), _dist_rgb(dist))


def triple_views(t: Triple, opacity: float) -> Views:
    return views(t.image, t.class_map, t.inst_map, t.dist_map, t.inst_classes, t.layout.class_set, opacity)


def preview_views(p: StepPreview, canvas: Layout, opacity: float) -> Views:
    """Views of the current x̂_0 estimate; instances are cut here as at the end, so the user
    sees how the nuclei will separate. `canvas` is the layout at the model's resolution."""
    cut = cut_instances(p.dist, p.class_map, canvas.xy(), canvas.class_ids())
    return views(p.image, p.class_map, cut.inst_map, p.dist, dict(cut.inst_classes), canvas.class_set, opacity)


def missed_line(params: dict) -> str:
    """One line on the centroids that produced no instance, and the sampling's warnings."""
    total, missed = int(params.get("centroids", 0)), int(params.get("missed_centroids", 0))
    warnings = "".join(f" ⚠ {w}." for w in params.get("warnings", []))
    if not total:
        return "The layout has no centroids." + warnings
    if not missed:
        return f"All {total} centroids produced an instance." + warnings
    idx = params.get("missed_indices", [])
    shown = ", ".join(f"#{i}" for i in idx[:12]) + (", …" if len(idx) > 12 else "")
    return f"{missed} of {total} centroids produced no instance (points {shown} of layout.json)." + warnings


def stages_line(t: Triple) -> str:
    """Which stages made the triple and at what resolution, e.g. "base + upsampler at 0.25 µm/px"."""
    stages = " + ".join(t.params.get("stages", ["base"]))
    mpp = t.layout.mpp or t.params.get("model_mpp")
    return f"{stages} at {mpp:g} µm/px" if mpp else stages
