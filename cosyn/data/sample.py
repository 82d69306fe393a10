"""The one in-memory record every dataset reader produces."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cosyn.core.classes import ClassSet
from cosyn.core.instances import instance_table, paint_classes
from cosyn.core.triple import Triple


class DataError(ValueError):
    """Bad input data. The message names the file and the problem."""


@dataclass
class Sample:
    """One tile: image, instance map, class map and per-instance centroids/classes.

    - image: (H, W, 3) uint8 RGB
    - inst_map: (H, W) int32, 0 = background, ids need not be contiguous
    - class_map: (H, W) uint8 class ids of `classes`
    - inst_ids: (N,) int32, ascending, the non-zero ids of inst_map
    - centroids: (N, 2) float64, (x = column, y = row), mean of each instance's pixels
    - inst_classes: (N,) int32 class id of each instance
    - source: the source tile / slide id, used to split validation (never by patch)
    """

    name: str
    image: np.ndarray
    inst_map: np.ndarray
    class_map: np.ndarray
    inst_ids: np.ndarray
    centroids: np.ndarray
    inst_classes: np.ndarray
    classes: ClassSet
    tissue: str | None = None
    mpp: float | None = None
    source: str = ""

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


def sample_from_triple(triple: Triple, name: str, source: str, classes: ClassSet, mpp: float) -> Sample:
    """The one conversion between the two records: a generated triple as a folder-format Sample whose
    label is its instances painted in their classes.

    The class map is rebuilt from the instances (each nucleus one class, the one the pipeline gave
    it) so image, instance and class map agree exactly; label pixels outside every instance (specks
    the instance cutter dropped) and instances without a nucleus class become background.
    """
    inst = triple.inst_map
    class_map = paint_classes(inst, triple.inst_classes)
    inst = np.where(class_map > 0, inst, 0).astype(np.int32)
    ids, centroids, inst_classes = instance_table(inst, class_map)
    return Sample(name, triple.image, inst, class_map, ids, centroids, inst_classes, classes,
                  triple.layout.tissue, mpp, source)
