"""Editing a real tile: regenerate only the region around changed nuclei, keep everything else (docs/model.md,
"Editing a real tile"). `edit_tile` is the public face, `read_annotated_tile` reads the tile it starts from;
`KnownRegion` is what the sampler holds fixed."""

from cosyn.editing.annotation import read_annotated_tile
from cosyn.editing.edit import EditError, edit_tile
from cosyn.editing.known import KnownRegion

__all__ = ["EditError", "KnownRegion", "edit_tile", "read_annotated_tile"]
