"""Layouts and prompts derived from a Sample (the dense maps themselves live in cosyn.core.maps)."""

from __future__ import annotations

import json
import random
from functools import lru_cache

from cosyn import ASSETS
from cosyn.core.layout import Layout
from cosyn.core.maps import distance_map
from cosyn.core.triple import Triple
from cosyn.data.sample import Sample

VOCABULARY_PATH = ASSETS / "prompt_vocabulary.json"


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
