"""The dataset report `cosyn prepare` and the studio show: statistics and the soft problems a reader
lets through, gathered in one streaming pass.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cosyn.core.classes import ClassSet
from cosyn.core.instances import instance_table
from cosyn.data.sample import Sample

_CENTROID_TOLERANCE_PX = 0.5
_EXAMPLES = 3  # ids quoted per problem line


@dataclass
class Report:
    """Dataset statistics and the problems found, renderable as JSON and Markdown.

    `sizes` counts images per "WIDTHxHEIGHT"; `class_histogram` counts instances per class id.
    """

    n_samples: int
    n_sources: int
    sizes: dict[str, int]
    n_instances: int
    instances_mean: float
    instances_max: int
    class_histogram: dict[int, int]
    classes: list[str]
    empty_tiles: list[str]
    problems: list[str]
    dataset: str = ""
    fmt: str = ""

    def class_name(self, class_id: int) -> str:
        return self.classes[class_id] if 0 <= class_id < len(self.classes) else str(class_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "format": self.fmt,
            "samples": self.n_samples,
            "sources": self.n_sources,
            "sizes": self.sizes,
            "instances": {"total": self.n_instances, "per_tile_mean": self.instances_mean,
                          "per_tile_max": self.instances_max},
            "classes": self.classes,
            "class_histogram": [
                {"id": k, "name": self.class_name(k), "instances": v} for k, v in sorted(self.class_histogram.items())
            ],
            "empty_tiles": self.empty_tiles,
            "problems": self.problems,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def to_markdown(self) -> str:
        lines = ["# Dataset report", ""]
        if self.dataset:
            lines.append(f"- dataset: `{self.dataset}` (format {self.fmt or '?'})")
        lines += [
            f"- samples: {self.n_samples} from {self.n_sources} sources",
            f"- image sizes: {', '.join(f'{k} ({v})' for k, v in sorted(self.sizes.items()))}",
            f"- instances: {self.n_instances} in total, per tile mean {self.instances_mean:.1f}, "
            f"max {self.instances_max}",
            f"- empty tiles: {len(self.empty_tiles)}" + "".join(f"\n  - {n}" for n in self.empty_tiles),
            "",
            "## Instances per class",
            "",
            "| id | class | instances |",
            "| --- | --- | --- |",
        ]
        lines += [f"| {k} | {self.class_name(k)} | {v} |" for k, v in sorted(self.class_histogram.items())]
        lines += ["", f"## Problems ({len(self.problems)})", ""]
        lines += [f"- {p}" for p in self.problems] or ["None found."]
        return "\n".join(lines) + "\n"


def _examples(parts: list[str]) -> str:
    return ", ".join(parts[:_EXAMPLES]) + (", ..." if len(parts) > _EXAMPLES else "")


def _sample_problems(s: Sample) -> list[str]:
    """Soft inconsistencies a reader lets through: stored per-instance data that disagrees with
    the maps. Hard errors (shapes, dtypes, class ids) never get this far."""
    ids, means, majority = instance_table(s.inst_map, s.class_map)
    if not np.array_equal(ids, s.inst_ids) or len(s.centroids) != len(ids) or len(s.inst_classes) != len(ids):
        return ["inst_ids, centroids or inst_classes do not match the instance map's ids"]
    problems = []
    off = np.abs(np.asarray(s.centroids) - means).max(axis=1) if len(ids) else np.zeros(0)
    bad = np.flatnonzero(off > _CENTROID_TOLERANCE_PX)
    if len(bad):
        problems.append(
            f"{len(bad)} instance centroid(s) lie over {_CENTROID_TOLERANCE_PX} px from their mask mean "
            f"(id: {_examples([f'{ids[i]} by {off[i]:.1f} px' for i in bad])})"
        )
    unclassed = np.flatnonzero(s.inst_classes == 0)
    if len(unclassed):
        problems.append(
            f"{len(unclassed)} instance(s) have class 0, background (id: {_examples([str(ids[i]) for i in unclassed])})"
        )
    differ = np.flatnonzero((s.inst_classes != majority) & (s.inst_classes != 0))
    if len(differ):
        problems.append(
            f"{len(differ)} instance(s) have a class other than the class map's majority under them "
            f"(id: {_examples([f'{ids[i]}: {s.inst_classes[i]} vs {majority[i]}' for i in differ])})"
        )
    stray = int(np.count_nonzero((s.inst_map == 0) & (s.class_map != 0)))
    if stray:
        problems.append(f"{stray} class-map pixel(s) are foreground outside every instance")
    return problems


class Validator:
    """Accumulates statistics sample by sample, so a dataset is validated in one streaming pass."""

    def __init__(self) -> None:
        self._names: set[str] = set()
        self._sources: set[str] = set()
        self._sizes: Counter[str] = Counter()
        self._counts: list[int] = []
        self._histogram: Counter[int] = Counter()
        self._classes: ClassSet | None = None
        self._empty: list[str] = []
        self._problems: list[str] = []

    def add(self, s: Sample) -> None:
        if s.name in self._names:
            self._problems.append(f"{s.name}: duplicate sample name")
        self._names.add(s.name)
        self._sources.add(s.source or s.name)
        if self._classes is None:
            self._classes = s.classes
        elif s.classes != self._classes:
            self._problems.append(f"{s.name}: class set {s.classes.to_list()} differs from {self._classes.to_list()}")
        self._sizes[f"{s.width}x{s.height}"] += 1
        self._counts.append(len(s.inst_ids))
        self._histogram.update(s.inst_classes.tolist())
        if not len(s.inst_ids):
            self._empty.append(s.name)
        self._problems += [f"{s.name}: {p}" for p in _sample_problems(s)]

    def report(self, dataset: str = "", fmt: str = "") -> Report:
        counts = np.asarray(self._counts)
        return Report(
            n_samples=len(counts),
            n_sources=len(self._sources),
            sizes=dict(self._sizes),
            n_instances=int(counts.sum()),
            instances_mean=float(counts.mean()) if len(counts) else 0.0,
            instances_max=int(counts.max()) if len(counts) else 0,
            class_histogram=dict(sorted(self._histogram.items())),
            classes=self._classes.to_list() if self._classes else [],
            empty_tiles=self._empty,
            problems=self._problems,
            dataset=dataset,
            fmt=fmt,
        )


def validate(samples: Iterable[Sample]) -> Report:
    """Statistics and soft problems of `samples`; hard errors raise DataError while reading."""
    validator = Validator()
    for s in samples:
        validator.add(s)
    return validator.report()
