"""Conditioning and supervision targets derived from a Sample or Layout.

Distance map definition (instance separation at sampling depends on it):
    d(p) = EDT_i(p) / max_{q in i} EDT_i(q)   for p in instance i, 0 on background,
where EDT_i is the Euclidean distance to the nearest pixel *outside instance i* (so a
touching neighbour counts as outside). d is 1 at each nucleus' deepest point and falls to
1/max EDT_i (> 0) on its boundary pixels; every foreground pixel is > 0, which lets the
watershed use d > 0 as a foreground cue and -d as the landscape with one basin per nucleus.
"""

from __future__ import annotations

import json
import random
from functools import lru_cache

import numpy as np
from scipy import ndimage

from cosyn import ASSETS
from cosyn.core.layout import Layout
from cosyn.core.triple import Triple
from cosyn.data.sample import Sample

VOCABULARY_PATH = ASSETS / "prompt_vocabulary.json"


# -- point maps -------------------------------------------------------------------------------
def point_map(xy: np.ndarray, class_ids: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) uint8: class id at each centroid's pixel, 0 elsewhere. x = c is the centre of pixel c
    (HoVer-Net's centroid = mean of pixel indices), so a centroid belongs to pixel round(x).

    When two centroids round to the same pixel the later one wins; at the working
    resolutions nuclei are several pixels apart, so this is rare and harmless.
    """
    out = np.zeros((height, width), dtype=np.uint8)
    if len(xy) == 0:
        return out
    cols = np.clip(np.floor(xy[:, 0] + 0.5).astype(np.int64), 0, width - 1)
    rows = np.clip(np.floor(xy[:, 1] + 0.5).astype(np.int64), 0, height - 1)
    out[rows, cols] = class_ids.astype(np.uint8)
    return out


# -- distance map ----------------------------------------------------------------------------
def distance_map(inst_map: np.ndarray) -> np.ndarray:
    """(H, W) float32 per-nucleus normalised inner distance (see module docstring)."""
    out = np.zeros(inst_map.shape, dtype=np.float32)
    dense = _dense_labels(inst_map)
    for idx, sl in enumerate(ndimage.find_objects(dense)):
        if sl is None:
            continue
        # pad by one so the EDT sees the outside at crop borders
        mask = dense[sl] == idx + 1
        edt = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        out[sl][mask] = (edt[mask] / edt.max()).astype(np.float32)
    return out


def _dense_labels(inst_map: np.ndarray) -> np.ndarray:
    """Ids relabelled to 0..N. find_objects allocates one slot per id value, and tile-wide
    CoNSeP ids run into the thousands."""
    ids, inverse = np.unique(inst_map, return_inverse=True)
    dense = inverse.reshape(inst_map.shape).astype(np.int32)
    return dense if ids[0] == 0 else dense + 1


# -- layouts and prompts -------------------------------------------------------------------------
def layout_from_sample(sample: Sample) -> Layout:
    return Layout.from_arrays(
        sample.width,
        sample.height,
        sample.classes,
        sample.centroids,
        sample.inst_classes,
        mpp=sample.mpp,
        tissue=sample.tissue,
    )


def triple_from_sample(sample: Sample) -> Triple:
    """A real tile as a triple (its distance map computed), to export or compare like a generated one."""
    inst_classes = {int(i): int(c) for i, c in zip(sample.inst_ids, sample.inst_classes, strict=True)}
    return Triple(sample.image, sample.class_map, sample.inst_map, distance_map(sample.inst_map), inst_classes,
                  layout_from_sample(sample), {"source_tile": sample.name})


@lru_cache(maxsize=1)
def prompt_vocabulary() -> dict:
    return json.loads(VOCABULARY_PATH.read_text())


def density_word(n_points: int, width: int, height: int, mpp: float) -> str:
    per_100um2 = n_points / (width * height * mpp * mpp / 100.0)
    for level in prompt_vocabulary()["density"]["levels"]:
        if level["below"] is None or per_100um2 < level["below"]:
            return level["word"]
    raise AssertionError("the last density level must have below = null")


def structure_prompt(layout: Layout, default_mpp: float = 0.25, rng: random.Random | None = None) -> str:
    """The reference template plus density and dominant-class words.

    With `rng`, the class order is shuffled as in CoSyn's training so the model does not
    tie meaning to position; without it the order is fixed (by count) for a stable default.
    """
    voc = prompt_vocabulary()
    tissue = layout.tissue or voc["default_tissue"]
    counts = {k: v for k, v in layout.counts().items() if v > 0}
    if not counts:
        return voc["empty"].format(tissue=tissue)
    words = voc["class_words"]
    names = sorted(counts, key=lambda c: (-counts[c], c))
    if rng is not None:
        rng.shuffle(names)
    listed = [words.get(n, n) for n in names]
    classes = listed[0] if len(listed) == 1 else ", ".join(listed[:-1]) + " and " + listed[-1]
    text = voc["template"].format(tissue=tissue, classes=classes)
    mpp = layout.mpp or default_mpp
    text += voc["density"]["phrase"].format(word=density_word(len(layout.points), layout.width, layout.height, mpp))
    total = sum(counts.values())
    top = max(counts, key=lambda c: counts[c])
    if len(counts) > 1 and counts[top] / total >= voc["dominant"]["min_fraction"]:
        text += voc["dominant"]["phrase"].format(cls=words.get(top, top))
    return text
