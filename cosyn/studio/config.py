"""Studio settings and the `python app.py` command line."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cosyn.model.ranges import Bounds, check_numbers

DEFAULT_CANVAS_MPP = 0.25  # 40x scans, the resolution pathologists annotate CoNSeP-like data at
AUTH_ENV = "COSYN_STUDIO_AUTH"  # user:password, out of sight of `ps` (a command line is not)
# Each number's sane range (inclusive), checked on construction: port 99999 and an upload limit of NaN ended in
# tracebacks, and a negative queue was accepted.
STUDIO_RANGES: dict[str, Bounds] = {"port": (1, 65535), "max_upload_mb": (0.001, 100_000.0),
                                    "upload_quota_mb": (0.001, 10_000_000.0), "max_queue": (1, 10_000),
                                    "canvas_mpp": (0.01, 10.0)}


@dataclass
class StudioConfig:
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    auth: tuple[str, str] | None = None
    checkpoints: Path = Path("checkpoints")
    default_checkpoint: str = "default"
    data_roots: tuple[Path, ...] = ()
    runs: Path = Path("runs")
    outputs: Path = Path("outputs/studio")
    max_upload_mb: float = 200.0
    upload_quota_mb: float = 1000.0  # per client address and hour; the upload folder holds at most 2x
    max_queue: int = 16
    canvas_mpp: float = DEFAULT_CANVAS_MPP
    trust_unverified: bool = False  # load checkpoints whose weights have no recorded checksum

    def __post_init__(self) -> None:
        check_numbers(self, STUDIO_RANGES, "studio options")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def uploads(self) -> Path:
        """Where uploaded dataset zips are unpacked; training may read from here too."""
        return self.runs / "uploads"

    @property
    def gradio_temp(self) -> Path:
        """Gradio's upload and cache folder for this studio alone (its default, /tmp/gradio, is shared by
        every Gradio app on the machine); beside the outputs, not inside them: it is not served."""
        return self.outputs.parent / f".{self.outputs.name}-gradio"

    @property
    def dataset_roots(self) -> tuple[Path, ...]:
        return (*self.data_roots, self.uploads)


def default_data_roots(cwd: Path) -> tuple[Path, ...]:
    return tuple(p for p in (cwd / "data", cwd.parent / "shared" / "data") if p.is_dir())


def _auth(value: str) -> tuple[str, str]:
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise argparse.ArgumentTypeError(f"--auth and {AUTH_ENV} take user:password")
    return user, password


def parse_args(argv: Sequence[str] | None = None, cwd: Path | None = None) -> StudioConfig:
    p = argparse.ArgumentParser(description="CoSyn Studio: place nuclei, sample, export, fine-tune.")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="open a public Gradio share link (off by default)")
    p.add_argument("--auth", type=_auth, metavar="USER:PASSWORD",
                   help=f"require a login; the environment variable {AUTH_ENV}=user:password does the same "
                        "without showing the password in `ps`")
    p.add_argument("--checkpoints", type=Path, default=Path("checkpoints"), help="folder of checkpoint folders")
    p.add_argument("--data-root", dest="data_roots", type=Path, action="append",
                   help="folder that server-side dataset paths must lie in (repeatable; "
                        "default: ./data and ../shared/data where present)")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="folder for training runs")
    p.add_argument("--outputs", type=Path, default=Path("outputs/studio"), help="folder for generated bundles")
    p.add_argument("--max-upload-mb", type=float, default=200.0, help="largest accepted upload")
    p.add_argument("--upload-quota-mb", type=float, default=1000.0,
                   help="uploads one client address may send per hour (the upload folder holds at most twice that)")
    p.add_argument("--max-queue", type=int, default=16, help="requests waiting beyond this are turned away")
    p.add_argument("--trust-unverified", action="store_true",
                   help="load checkpoints that have no recorded checksum (checksums.json), whose damage or "
                        "replacement cannot be detected; the model list warns about each (default: refuse them)")
    a = p.parse_args(argv)
    if a.auth is None and os.environ.get(AUTH_ENV):
        try:
            a.auth = _auth(os.environ[AUTH_ENV])
        except argparse.ArgumentTypeError as e:
            p.error(str(e))
    cwd = cwd or Path.cwd()
    roots = tuple(a.data_roots) if a.data_roots else default_data_roots(cwd)
    try:
        return StudioConfig(host=a.host, port=a.port, share=a.share, auth=a.auth, checkpoints=a.checkpoints,
                            data_roots=roots, runs=a.runs, outputs=a.outputs, max_upload_mb=a.max_upload_mb,
                            upload_quota_mb=a.upload_quota_mb, max_queue=a.max_queue,
                            trust_unverified=a.trust_unverified)
    except ValueError as e:
        p.error(str(e))
