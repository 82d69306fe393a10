"""Markdown of the calibrated judge: its calibration lines, and a comparison's row that is withheld when
they fail. Shared by `cosyn evaluate`'s realism section and benchmarks/realism_judge.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

NOT_CALIBRATED = "**The judge is not calibrated: a calibration line fails its bar, so no verdict is shown.**"


def auc_cell(row: dict[str, Any]) -> str:
    return f"{row['auc_mean']:.3f} ± {row['auc_std']:.3f}"


def seeds_cell(row: dict[str, Any]) -> str:
    return ", ".join(f"{a:.3f}" for a in row["auc_per_seed"])


def paired_cell(row: dict[str, Any], floor: dict[str, Any]) -> str:
    """Seed s of a row and of the floor score the same validation sources: their difference per seed is
    paired, and varies far less than either AUC over seeds."""
    diff = np.subtract(row["auc_per_seed"], floor["auc_per_seed"])
    return f"{diff.mean():+.3f} ± {diff.std():.3f}"


def calibration_table(lines: dict[str, dict[str, Any]]) -> list[str]:
    md = ["| calibration line | C2ST AUC mean ± sd | per seed | bar | pass |", "|---|---|---|---|---|"]
    return md + [f"| {row['text']} | {auc_cell(row)} | {seeds_cell(row)} | {row['bar']} | "
                 f"{'yes' if row['pass'] else '**no**'} |" for row in lines.values()]


def _fmt(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def realism_judge_markdown(c2st: dict[str, Any] | None, texture: dict[str, Any] | None) -> list[str]:
    """The realism section's judge part: calibration lines, then the generated row or its withholding,
    then the texture and label–image agreement numbers."""
    md: list[str] = []
    if c2st is not None and "skipped" in c2st:
        md += [f"Classifier two-sample test skipped: {c2st['skipped']}.", ""]
    elif c2st is not None and "calibration" in c2st:
        md += ["Classifier two-sample test (calibrated judge, docs/realism_judge.md): held-out ROC AUC of a CNN "
               "telling real from other crops, split by source tile, JPEG q75 on both sides (0.5 = "
               f"indistinguishable); calibration lines at {c2st['calibration_mpp']} µm/px on real tiles.", ""]
        md += calibration_table(c2st["calibration"]) + [""]
        gen = c2st["generated"]
        if c2st["calibrated"]:
            verdict = c2st["verdict"]
            md += [f"Generated vs real at {c2st['mpp']} µm/px: C2ST AUC **{auc_cell(gen)}** (seeds {seeds_cell(gen)}); "
                   f"training-split vs validation floor at {c2st['mpp']} µm/px {auc_cell(c2st['floor'])}; "
                   f"minus floor, paired by seed, {paired_cell(gen, c2st['floor'])}; "
                   f"bar {verdict['target']}: {'met' if verdict['pass'] else '**not met**'}.", ""]
        else:
            md += [NOT_CALIBRATED, ""]
    if texture is not None:
        md += [f"Laplacian-variance ratio, generated / real: {_fmt(texture['laplacian_ratio'], 2)}. Label–image "
               f"agreement, hematoxylin AUC of nucleus pixels (median over tiles): generated "
               f"{_fmt(texture['h_auc_generated'])}, real tiles with their own annotations "
               f"{_fmt(texture['h_auc_real'])}.", ""]
    return md


def candidate_rows(names: Sequence[str], rows: Sequence[dict[str, Any]], ok: bool, floor: dict[str, Any],
                   margin: float) -> list[str]:
    """A candidates table of one view; the verdict column says 'withheld' when the judge is not calibrated."""
    target = floor["auc_mean"] + margin
    md = ["| candidate | C2ST AUC mean ± sd | per seed | minus floor, per seed: mean ± sd | KID | Laplacian ratio "
          f"| H-AUC median | ≤ floor + {margin} ({target:.3f}) |", "|---|---|---|---|---|---|---|---|"]
    for name, r in zip(names, rows, strict=True):
        verdict = ("met" if r["auc_mean"] <= target else "not met") if ok else "withheld"
        kid = f"{r['kid']:.4f}" if "kid" in r else "–"
        md.append(f"| {name} | {auc_cell(r)} | {seeds_cell(r)} | {paired_cell(r, floor)} | {kid} | "
                  f"{r['laplacian_ratio']:.2f} | {r['h_auc_median']:.3f} | {verdict} |")
    return md
