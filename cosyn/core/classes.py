"""Nucleus class sets per dataset: ids, names and display colours.

Id 0 is always background. Names are lower-case and unique, so class sets can be
matched by name when a model is fine-tuned on a dataset with another class set.
"""

from __future__ import annotations

from dataclasses import dataclass

RGB = tuple[int, int, int]

# Colours follow HoVer-Net's overlay conventions where a class exists there.
_DEFAULT_COLOURS: dict[str, RGB] = {
    "background": (0, 0, 0),
    "other": (255, 165, 0),
    "inflammatory": (0, 255, 0),
    "epithelial": (255, 0, 0),
    "spindle": (0, 0, 255),
    "neoplastic": (255, 0, 0),
    "connective": (0, 0, 255),
    "dead": (255, 255, 0),
    "neutrophil": (255, 255, 0),
    "lymphocyte": (0, 255, 0),
    "plasma": (0, 255, 255),
    "eosinophil": (255, 0, 255),
}
_FALLBACK_COLOURS: list[RGB] = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
]


@dataclass(frozen=True)
class ClassSet:
    """An ordered class list; index = class id, 0 = background."""

    names: tuple[str, ...]
    colours: tuple[RGB, ...] = ()

    def __post_init__(self) -> None:
        names = tuple(str(n).strip().lower() for n in self.names)
        if len(names) < 2:
            raise ValueError("a class set needs background plus at least one nucleus class")
        if names[0] != "background":
            raise ValueError(f"class 0 must be 'background', got {names[0]!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"class names must be unique, got {list(names)}")
        object.__setattr__(self, "names", names)
        if not self.colours:
            colours = []
            for i, n in enumerate(names):
                colours.append(_DEFAULT_COLOURS.get(n, _FALLBACK_COLOURS[i % len(_FALLBACK_COLOURS)]))
            object.__setattr__(self, "colours", tuple(colours))
        elif len(self.colours) != len(names):
            raise ValueError("one colour per class is required")

    @property
    def num_classes(self) -> int:
        """Number of classes including background."""
        return len(self.names)

    @property
    def nucleus_names(self) -> tuple[str, ...]:
        return self.names[1:]

    def id_of(self, name: str) -> int:
        key = str(name).strip().lower()
        try:
            return self.names.index(key)
        except ValueError:
            raise ValueError(f"unknown class {name!r}; this class set has {list(self.names)}") from None

    def to_list(self) -> list[str]:
        return list(self.names)


CONSEP = ClassSet(("background", "other", "inflammatory", "epithelial", "spindle"))
PANNUKE = ClassSet(("background", "neoplastic", "inflammatory", "connective", "dead", "epithelial"))
CONIC = ClassSet(
    ("background", "neutrophil", "epithelial", "lymphocyte", "plasma", "eosinophil", "connective")
)

# PanNuke's types.npy tissue names, lower-cased, are used as-is.
TISSUES: tuple[str, ...] = (
    "adrenal gland", "bile duct", "bladder", "breast", "cervix", "colon", "esophagus",
    "head neck", "kidney", "liver", "lung", "ovarian", "pancreatic", "prostate", "skin",
    "stomach", "testis", "thyroid", "uterus",
)
