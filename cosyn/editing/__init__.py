"""Editing a real tile: regenerate only the region around changed nuclei, keep everything else (docs/model.md,
"Editing a real tile"). `edit_tile` is the public face, `read_annotated_tile` reads the tile it starts from;
the sampler holds the rest fixed through `cosyn.model.known.KnownRegion`."""

from cosyn.editing.annotation import read_annotated_tile
from cosyn.editing.edit import EditError, edit_tile

__all__ = ["EditError", "edit_tile", "read_annotated_tile"]
