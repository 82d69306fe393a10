"""`prepare`: any supported dataset -> the normalised folder format plus a validation report.

The output appears all at once or not at all: everything is written into a temporary folder
beside `out` (same parent, so the final rename stays on one file system) and renamed into place
only after the last file is written. A half-written dataset would otherwise train silently on
whatever tiles made it to disk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from tqdm import tqdm

from cosyn.data.formats import PathLike, detect_format, read_dataset, write_folder
from cosyn.data.report import Report, Validator
from cosyn.data.sample import Sample
from cosyn.io.fileio import atomic_dir


def prepare(
    src: PathLike,
    out: PathLike,
    fmt: str = "auto",
    progress: bool = True,
    overwrite: bool = False,
    split: str | None = None,
    mpp: float | None = None,
) -> Report:
    """Read `src` (format `fmt`, or detected), validate it and write the normalised dataset with
    `report.json` and `report.md` to `out`. Raises DataError on bad input, FileExistsError when
    `out` holds files and `overwrite` is False; on any failure `out` is left as it was.
    With `mpp`, every sample is resampled to it first (as training would): a smaller copy
    that trains without resampling again."""
    src, out = Path(src), Path(out)
    if fmt == "auto":
        fmt = detect_format(src)
    reader = read_dataset(src, fmt, split)
    samples: Iterable[Sample] = reader
    if mpp is not None:
        from cosyn.data.dataset import resample_sample

        samples = (resample_sample(s, mpp) for s in reader)
    _check_target(out, overwrite)
    with atomic_dir(out) as tmp:
        validator = Validator()
        stream = tqdm(samples, desc=f"prepare {fmt}", unit="tile", total=len(reader), disable=not progress)
        write_folder(_validated(stream, validator), tmp)
        report = validator.report(dataset=str(src), fmt=fmt)
        (tmp / "report.json").write_text(report.to_json())
        (tmp / "report.md").write_text(report.to_markdown())
    return report


def _validated(samples: Iterable[Sample], validator: Validator) -> Iterator[Sample]:
    for s in samples:
        validator.add(s)
        yield s


def _check_target(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out}: folder is not empty; pass overwrite=True to replace it")
