"""Dataset checks for the Train tab: prepare's validation report, example tiles, class mapping."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cosyn.core.classes import ClassSet
from cosyn.core.visual import draw_points
from cosyn.data.formats import detect_format, read_dataset
from cosyn.data.report import Report, Validator
from cosyn.data.sample import DataError
from cosyn.training.class_mapping import class_mapping

EXAMPLES = 4


@dataclass
class Validation:
    report: Report
    classes: ClassSet
    examples: list[tuple[np.ndarray, str]]  # (tile with its centroids drawn, caption)


def validate_dataset(path: Path, fmt: str = "auto",
                     progress: Callable[[int, int], None] | None = None) -> Validation:
    """Read every sample as training will, collecting the report `prepare` writes; unreadable
    samples are listed as problems rather than stopping the check."""
    fmt = detect_format(path) if fmt == "auto" else fmt
    samples = read_dataset(path, fmt)
    validator = Validator()
    examples: list[tuple[np.ndarray, str]] = []
    unreadable: list[str] = []
    classes: ClassSet | None = None
    for i in range(len(samples)):
        if progress:
            progress(i, len(samples))
        try:
            s = samples[i]
        except DataError as e:
            unreadable.append(str(e))
            continue
        validator.add(s)
        classes = classes or s.classes
        if len(examples) < EXAMPLES:
            tile = draw_points(s.image, s.centroids, s.inst_classes, s.classes, radius=2.0)
            examples.append((tile, f"{s.name}: {len(s.inst_ids)} nuclei"))
    if classes is None:
        raise DataError(f"{path}: no readable samples ({len(unreadable)} unreadable)")
    report = validator.report(dataset=str(path), fmt=fmt)
    report.problems += [f"unreadable: {msg}" for msg in unreadable]
    return Validation(report, classes, examples)


def mapping_text(model_classes: ClassSet | None, data_classes: ClassSet) -> str:
    """How fine-tuning will map the base model's classes onto the dataset's, by name."""
    if model_classes is None:
        return f"From scratch: the model learns the dataset's classes {list(data_classes.nucleus_names)}."
    if model_classes.names == data_classes.names:
        return f"Same class set as the base model: {list(data_classes.nucleus_names)}."
    mapping = class_mapping(model_classes, data_classes)
    kept = [data_classes.names[i] for i in mapping if i > 0]
    fresh = [n for i, n in enumerate(data_classes.names) if i not in mapping]
    dropped = [n for n in model_classes.nucleus_names if n not in data_classes.names]
    return (f"Class sets differ: model {list(model_classes.nucleus_names)} → data "
            f"{list(data_classes.nucleus_names)}.\n\n- kept by name: {kept or 'none'}\n"
            f"- learned from scratch: {fresh or 'none'}\n- dropped from the model: {dropped or 'none'}")
