"""Files in and out: atomic writes and checksums (fileio), tensor-state files (state_io), layout files
(layout_io) and result bundles in PNG/NPY/MAT/GeoJSON/COCO (export). Import from the modules."""
