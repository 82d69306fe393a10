"""`prepare`: any supported dataset -> the normalised folder format plus a validation report.

The output appears all at once or not at all: everything is written into a temporary folder
beside `out` (same parent, so the final rename stays on one file system) and renamed into place
only after the last file is written. A half-written dataset would otherwise train silently on
whatever tiles made it to disk.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from tqdm import tqdm

from cosyn.data.dataset import resample_sample
from cosyn.data.formats import PathLike, detect_format, read_dataset, write_folder
from cosyn.data.report import Report, Validator
from cosyn.data.sample import DataError, Sample
from cosyn.io.fileio import atomic_dir
from cosyn.io.guards import refuse_overlap

MAX_LISTED = 20  # bad tiles named in the error; the rest are counted


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
    `out` holds files and `overwrite` is False, OverlapError when `out` is, holds or lies inside `src`;
    on any failure `out` is left as it was.
    With `mpp`, every sample is resampled to it first (as training would): a smaller copy
    that trains without resampling again."""
    src, out = Path(src), Path(out)
    if mpp is not None and not (isinstance(mpp, (int, float)) and 0.01 <= mpp <= 10):  # NaN fails too
        raise DataError(f"--mpp {mpp!r} must be a number of µm per pixel in 0.01..10 (CoNSeP's 40x is 0.25)")
    refuse_overlap(src, out, "--out")  # replacing `out` whole must never take `src` with it
    if fmt == "auto":
        fmt = detect_format(src)
    reader = read_dataset(src, fmt, split)
    _check_target(out, overwrite)
    with atomic_dir(out) as tmp:
        validator = Validator()
        bar = tqdm(total=len(reader), desc=f"prepare {fmt}", unit="tile", disable=not progress)
        with bar:
            write_folder(_validated(reader, mpp, validator, bar), tmp)
        report = validator.report(dataset=str(src), fmt=fmt)
        (tmp / "report.json").write_text(report.to_json())
        (tmp / "report.md").write_text(report.to_markdown())
    return report


def _validated(reader: Sequence[Sample], mpp: float | None, validator: Validator, bar: tqdm) -> Iterator[Sample]:
    """Every readable sample (resampled to `mpp` if given), validated; the bad ones are collected and
    reported together at the end, so one run names every file to fix rather than the first."""
    bad = []
    for i in range(len(reader)):
        try:
            s = reader[i] if mpp is None else resample_sample(reader[i], mpp)
            validator.add(s)
        except DataError as e:
            bad.append(str(e))
        else:
            yield s
        bar.update()
    if bad:
        shown = "\n  ".join(bad[:MAX_LISTED])
        more = f"\n  ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
        raise DataError(f"{len(bad)} of {len(reader)} tiles cannot be used; nothing was written:\n  {shown}{more}")


def _check_target(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out}: folder is not empty; pass --overwrite (overwrite=True from Python) to "
                              "replace it")
