"""A session's results as export bundles on disk; the gallery state is a list of plain dicts.

Every triple is written as a full bundle (all formats) the moment it is made, so
exporting is only zipping, and `params.json` inside reproduces it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path

from cosyn.core.triple import Triple
from cosyn.io.export import FORMATS, read_bundle, write_bundle, zip_bundles

Entry = dict[str, str]  # {"dir": bundle folder, "image": its image.png, "caption": gallery caption}


def session_dir(outputs: Path, session: str | None) -> Path:
    """Where one browser session's bundles, exports and layout downloads go.

    The session id comes from the client (Gradio accepts any string, e.g. "..", in its heartbeat route,
    whose unload handler deletes this folder), so it is hashed into a name that cannot leave `outputs`.
    """
    return outputs / hashlib.sha256((session or "anonymous").encode()).hexdigest()[:32]


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
