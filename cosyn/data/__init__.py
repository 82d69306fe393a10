"""Datasets: a reader and writer for every supported format, the Sample they share, the
conditioning targets derived from it, the training Dataset, and `cosyn prepare`."""

from cosyn._lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "Sample": "sample", "DataError": "sample",
    "read_dataset": "formats", "write_dataset": "formats", "detect_format": "formats",
    "structure_prompt": "targets",
    "layout_from_sample": "targets",
    "CropDataset": "dataset", "resample_sample": "dataset", "split_by_source": "dataset",
    "prepare": "prepare", "Report": "report", "Validator": "report", "validate": "report",
})
