"""`evaluate(cfg, pipe)`: load the tiles, run the selected sections, write report.json, report.md and
the figures; sections not run are carried over from an earlier report of the same tiles."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cosyn.data.targets import layout_from_sample
from cosyn.evaluation.evaluate.config import SECTIONS, EvalConfig
from cosyn.evaluation.evaluate.figures import comparison_grid, save_png
from cosyn.evaluation.evaluate.report import bars, to_markdown
from cosyn.evaluation.evaluate.sections.consistency import consistency
from cosyn.evaluation.evaluate.sections.downstream import downstream
from cosyn.evaluation.evaluate.sections.fidelity import fidelity
from cosyn.evaluation.evaluate.sections.realism import realism
from cosyn.evaluation.evaluate.sections.speed import time_sampling
from cosyn.evaluation.evaluate.segmenters import real_segmenter
from cosyn.evaluation.evaluate.tiles import generated_tiles, load_real, native_tile
from cosyn.evaluation.judge import JUDGE_MPP
from cosyn.io.export import json_safe
from cosyn.model.pipeline import CoSynPipeline

# The sections that measure generated tiles: only these make the run generate.
_NEEDS_GENERATION = {"fidelity", "consistency", "realism"}

# What the generated tiles depend on: sections of an earlier report with the same values are still valid.
_SAME_TILES = ("checkpoint_sha256", "data", "format", "split", "val_fraction", "split_seed", "n_layouts",
               "samples_per_layout", "seed", "sampling")


def evaluate(cfg: EvalConfig, pipe: CoSynPipeline | None = None) -> dict[str, Any]:
    """Run the selected sections; write OUT/report.json, report.md and figures; return the report."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    pipe = pipe or CoSynPipeline.from_pretrained(cfg.checkpoint, device=cfg.device)
    mpp = pipe.config.mpp
    real = load_real(cfg, mpp)
    if real.classes.names != pipe.class_set.names:
        raise ValueError(f"{cfg.data} has classes {real.classes.to_list()}, the model {pipe.class_set.to_list()}")
    report: dict[str, Any] = {
        "config": {**asdict(cfg), "checkpoint_sha256": pipe.sha256},
        "data": {"mpp": mpp, "evaluated_tiles": len(real.split), "train_tiles": len(real.train),
                 "evaluated_sources": sorted(real.split_sources)},
        "figures": {},
        "skipped": [s for s in SECTIONS if s not in cfg.sections],
    }
    gens = generated_tiles(cfg, pipe, real, out) if _NEEDS_GENERATION & set(cfg.sections) else []
    if gens:
        save_png(out / "grid.png", comparison_grid(gens, real.classes, cfg.grid_rows))
        report["figures"]["grid"] = "grid.png"
    if "fidelity" in cfg.sections:
        report["fidelity"] = fidelity(gens, real.classes, mpp)
    if "consistency" in cfg.sections:
        report["consistency"] = consistency(real_segmenter(cfg, out, real, mpp), gens, real)
    if "realism" in cfg.sections:
        report["realism"] = realism(gens, real, mpp, cfg.seed, out, c2st_cfg=cfg.c2st,
                                    native=load_real(cfg, JUDGE_MPP))
        report["figures"]["morphology"] = "morphology.png"
    if "downstream" in cfg.sections:
        report["downstream"] = downstream(cfg, out, real, mpp)
    if "speed" in cfg.sections:
        report["speed"] = time_sampling(pipe, layout_from_sample(native_tile(cfg, real)), cfg.sampling,
                                        cfg.speed_runs)
    report = json_safe(report)  # JSON has no NaN: a metric that could not be computed is null
    _carry_over(report, out / "report.json", cfg.sections)
    report["bars"] = bars(report)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(to_markdown(report))
    return report


def _carry_over(report: dict[str, Any], previous_path: Path, ran: Sequence[str]) -> None:
    """Sections not run now are taken from OUT/report.json when it measured the same tiles, so a
    report can be built section by section."""
    if not previous_path.is_file():
        return
    previous = json.loads(previous_path.read_text())
    if any(previous.get("config", {}).get(k) != report["config"].get(k) for k in _SAME_TILES):
        return
    kept = [s for s in SECTIONS if s not in ran and s in previous]
    for name in kept:
        report[name] = previous[name]
    report["figures"] = {**previous.get("figures", {}), **report["figures"]}
    report["carried_over"] = kept
    report["skipped"] = [s for s in report["skipped"] if s not in kept]
