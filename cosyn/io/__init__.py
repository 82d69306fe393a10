"""Files in and out: result bundles (PNG/NPY/MAT/GeoJSON/COCO), layout files, and the atomic
writes and tensor-state files every folder the project writes goes through."""

from cosyn._lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "write_bundle": "export", "read_bundle": "export", "zip_bundles": "export", "json_safe": "export",
    "load_any": "layout_io", "save_any": "layout_io",
    "atomic_write": "fileio", "atomic_dir": "fileio", "dataclass_from_dict": "fileio",
    "save_state": "state_io", "load_state": "state_io",
})
