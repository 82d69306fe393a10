"""The contract between the pipeline and a second stage: a base triple in, the triple at a finer µm/px out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from cosyn.core.layout import Layout
from cosyn.core.triple import Triple

# A base triple's param asking for a stain (a cosyn.stages.texture.stain.Stain as a dict); a stage whose
# `takes_stain` is True brings its output to it, and the pipeline refuses the request for any other stage.
STAIN_PARAM = "stain_reference"


class StageError(ValueError):
    """A second stage that cannot be loaded or saved; the message names the file and the problem."""


@dataclass(frozen=True)
class StageContext:
    """What a stage may know of the base model it follows."""

    classes: list[str]
    base_mpp: float
    num_classes: int
    trust_unverified: bool = False  # load files that have no recorded checksum (--trust-unverified)


@runtime_checkable
class SecondStage(Protocol):
    name: str

    @property
    def sha256(self) -> str:
        """The stage's files' checksum, recorded in every triple it makes; "" when it has no files."""
        ...

    def to_mpp(self, triple: Triple, mpp: float, seed: int) -> Triple:
        """The BASE triple (at the base model's µm/px, with its maps, instances, layout and params) at `mpp`:
        params["stages"] names the stages that ran, and the instances are cut once, at `mpp`."""
        ...

    def save(self, folder: Path) -> dict:
        """Write the stage's own files, if any, into `folder` (a subfolder of the checkpoint that the caller
        creates) and return the JSON spec to record as config.json's "second_stage"."""
        ...


@runtime_checkable
class TileEditingStage(SecondStage, Protocol):
    """A stage that can also edit a real tile in place (cosyn.editing uses it when the tile is at the stage's
    `native_mpp`): the tile's nuclei inside `region` give way, and `layout`'s points there get new ones."""

    native_mpp: float

    def into_tile(self, tile_image: np.ndarray, tile_inst: np.ndarray, region: np.ndarray, layout: Layout,
                  base_inst: np.ndarray, seed: int) -> Triple:
        ...
