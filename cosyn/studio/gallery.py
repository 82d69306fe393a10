"""A session's results as export bundles on disk; the gallery state is a list of plain dicts.

Every triple is written as a full bundle (all formats) the moment it is made, so
exporting is only zipping, and `params.json` inside reproduces it. The result panels' pictures are
files in the browser's folder too, so that Clear results can find every copy Gradio made of them (a run's
live previews, and Gradio's copies of them, are deleted when the run ends).
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from gradio.processing_utils import hash_file
from gradio_client.utils import strip_invalid_filename_characters
from PIL import Image

from cosyn.core.triple import Triple
from cosyn.io.export import FORMATS, read_bundle, write_bundle, zip_bundles
from cosyn.io.fileio import atomic_write

Entry = dict[str, str]  # {"dir": bundle folder, "image": its image.png, "caption": gallery caption}


KEEP_DAYS = 7  # a browser's results stay this long after its last change, or until Clear results
VIEWS = "views"  # the result panels' pictures, in the browser's folder
PREVIEWS = "previews"  # a running sampling's live previews, there until the run ends


def new_browser_id() -> str:
    """A random id the page keeps in the browser's storage: its results folder survives reloads."""
    return secrets.token_hex(16)


def session_dir(outputs: Path, browser: str | None) -> Path:
    """Where one browser's bundles, exports and layout downloads go.

    The id comes from the client, so it is hashed into a name that cannot leave `outputs` (".." or a
    path would otherwise choose the folder), and one browser cannot name another's folder."""
    return outputs / hashlib.sha256((browser or "anonymous").encode()).hexdigest()[:32]


def own_entries(entries: Sequence[Entry] | None, folder: Path) -> list[Entry]:
    """The gallery entries a browser handed back that are bundles in its own folder and still on disk
    (a stale or edited entry must not make the studio read or zip another folder)."""
    root = folder.resolve()
    kept = []
    for e in entries or []:
        if not isinstance(e, dict) or not isinstance(e.get("dir"), str):
            continue
        bundle = Path(e["dir"]).resolve()
        if bundle.parent == root and (bundle / "image.png").is_file():
            kept.append({"dir": str(bundle), "image": str(bundle / "image.png"), "caption": str(e.get("caption", ""))})
    return kept


def sweep_expired(outputs: Path, keep_days: float = KEEP_DAYS, now: float | None = None) -> list[Path]:
    """Delete browser folders under `outputs` untouched for `keep_days`; the deleted folders."""
    limit = (time.time() if now is None else now) - keep_days * 86400
    gone = []
    for folder in outputs.glob("[0-9a-f]" * 32):
        newest = max((p.stat().st_mtime for p in folder.rglob("*")), default=folder.stat().st_mtime)
        if newest < limit:
            shutil.rmtree(folder, ignore_errors=True)
            gone.append(folder)
    return gone


def caption(params: dict) -> str:
    return (f"seed {params['seed']} · {params['steps']} steps · {params['sampler']} · "
            f"guidance {params['guidance']:g}")


def save_triples(triples: Sequence[Triple], folder: Path, first_index: int, checkpoint: str = "") -> list[Entry]:
    """Write each triple as bundle `NNN_seedS` under `folder`; returns their gallery entries."""
    entries = []
    for k, t in enumerate(triples, start=first_index):
        if checkpoint:
            t.params = {**t.params, "checkpoint": checkpoint}
        out = folder / f"{k:03d}_seed{t.params['seed']}_{t.params.get('index', 0)}"
        write_bundle(t, out, formats=FORMATS)
        entries.append({"dir": str(out), "image": str(out / "image.png"), "caption": f"#{k} · {caption(t.params)}"})
    return entries


def export_zip(entries: Sequence[Entry], out_dir: Path) -> Path:
    """One zip of the given bundles, named by time so exports never overwrite each other."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"cosyn_{len(entries)}_bundle{'s' if len(entries) > 1 else ''}_{stamp}.zip"
    return zip_bundles([Path(e["dir"]) for e in entries], out_dir / name)


def load(entry: Entry) -> Triple:
    return read_bundle(entry["dir"])


def picture_files(pictures: Sequence[np.ndarray], folder: Path) -> list[str]:
    """Each RGB picture as a PNG in `folder`, named by its content (the same picture is one file)."""
    paths = []
    for picture in pictures:
        data = np.ascontiguousarray(picture, dtype=np.uint8)
        path = folder / f"{hashlib.sha256(data.tobytes() + str(data.shape).encode()).hexdigest()[:32]}.png"
        if not path.is_file():
            atomic_write(path, lambda tmp, data=data: Image.fromarray(data).save(tmp, format="PNG"))
        paths.append(str(path))
    return paths


def forget(paths: Sequence[Path], gradio_cache: Path) -> int:
    """Delete `paths` (files or folders) and the copies Gradio made of their files to serve them; the
    number of copies deleted.

    Gradio serves a file from its cache folder as CACHE/<hash of the file>/<file name> (the hash seeded
    per installation: gradio.processing_utils.hash_file), and keeps it for a day: without this, a cleared
    result would stay downloadable from its old URL."""
    deleted = 0
    for path in paths:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for f in files:
            try:
                copy = gradio_cache / hash_file(f) / strip_invalid_filename_characters(f.name)
            except FileNotFoundError:  # deleted meanwhile (a Clear in another tab of the same browser)
                continue
            if copy.is_file():
                copy.unlink()
                deleted += 1
                with contextlib.suppress(OSError):  # another file of the same content may be cached there
                    copy.parent.rmdir()
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return deleted
