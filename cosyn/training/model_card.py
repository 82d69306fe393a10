"""MODEL_CARD.md for an exported checkpoint: data, steps, measured numbers, licence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONSEP_LICENCE = (
    "CoNSeP (Graham et al., HoVer-Net, Medical Image Analysis 2019), official Train split. "
    "Research use with citation of the HoVer-Net paper; third-party documentation states Apache 2.0."
)


def last_metrics(run: Path, n: int = 20) -> dict[str, float]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return {}
    rows = []
    for line in path.read_text().splitlines()[-n:]:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
    keys = ("loss", "image", "dist", "label", "steps_per_s")
    return {k: sum(r[k] for r in rows) / len(rows) for k in keys if rows and k in rows[0]}


def model_card_text(out: Path, run: Path, step: int, meta: dict[str, Any]) -> str:
    """A generated card for the checkpoint folder `out`, exported from `run` at `step`."""
    data, train, pipe = meta["data"], meta["train"], meta["pipeline"]
    m = last_metrics(run)
    lines = [
        f"# CoSyn checkpoint `{out.name}`",
        "",
        "## Model",
        f"- Joint denoiser {pipe['denoiser']['block_out_channels']}, classes {pipe['classes']}",
        f"- Works at {pipe['mpp']} µm/px; trained on {train['crop']}² crops; text encoder `{pipe['text_encoder']}`",
        f"- Steps: {step} (batch {train['batch']}, lr {train['lr']}, EMA of the weights)",
        "",
        "## Data",
        f"- `{data['data']}`: {data['samples']} samples, {data['train_tiles']} train / {data['val_tiles']} val tiles",
        f"- Validation sources (never trained on): {', '.join(data['val_sources']) or '(none)'}",
        f"- Tissues: {', '.join(data['tissues']) or 'unknown'}",
        "",
        "## Training loss (mean of the last logged steps)",
        *(f"- {k}: {v:.4f}" for k, v in m.items()),
        "",
        "## Measured quality",
        "`evaluation.md` beside this card, when present, holds the report of",
        f"`python -m cosyn evaluate --checkpoint {out} --data DATA --out DIR` (bars, figures, commands).",
        f"Speed: `python benchmarks/sample_latency.py --checkpoint {out} --steps 10 25 50 --runs 5`.",
        "",
        "## Licence of the data",
        CONSEP_LICENCE if "consep" in data["data"].lower() else "As stated by the dataset's owners.",
        "",
    ]
    return "\n".join(lines)
