"""`cosyn evaluate`: the measured quality of a checkpoint against a real dataset split.

Sections (each selectable; the full run is slow on 2 CPU cores), one module each under sections/:
1. fidelity     generate from the split's real layouts; do the conditioning centroids yield
                instances of the requested class? (seeded by the point-guided watershed, and by
                centroid pairing at HoVer-Net's radius)
2. consistency  a segmenter trained on real train tiles, scored on generated images against the
                generated labels, next to its score on the real split tiles
3. realism      FID / KID against the real split tiles, with the real-vs-real floor (real train tiles
                vs the split) and the naive baseline (each real tile's class mean colours painted
                into its label map); per-class morphology distances (area, eccentricity, solidity);
                more metrics plug into sections.realism.METRICS
4. downstream   segmenters trained on (a) real train tiles, (b) real + synthetic (`--synthetic`, from
                `cosyn augment`), same budget and seeds; scored on the real split tiles
5. speed        seconds per triple for the split's first layout (a 256² CoNSeP patch at 0.25 µm/px
                is a 128² canvas at the model's 0.5), median of N runs after one warm-up

Everything is compared at the model's mpp. The validation split is `split_by_source` with
training's defaults (val_fraction 0.15, seed 0), so it holds exactly the tiles training left out.

OUT holds report.json, report.md, grid.png, morphology.png, the generated tiles (generated/, reused
by later runs with the same settings) and the trained segmenters (segmenters/, reused likewise).

Modules: config (EvalConfig, SECTIONS), tiles (real and generated tiles), segmenters (trained and
reused), sections/ (one per section), figures (grid, histograms), report (bars, Markdown), driver
(`evaluate`, carry-over of earlier sections), cli (`add_evaluate_parser`).
"""

from cosyn.evaluation.evaluate.cli import add_evaluate_parser
from cosyn.evaluation.evaluate.config import DEFAULT_SECTIONS, SECTIONS, EvalConfig
from cosyn.evaluation.evaluate.driver import evaluate
from cosyn.evaluation.evaluate.figures import comparison_grid, histogram_panel, morphology_figure
from cosyn.evaluation.evaluate.report import BARS, bars, to_markdown
from cosyn.evaluation.evaluate.sections.consistency import consistency
from cosyn.evaluation.evaluate.sections.downstream import downstream
from cosyn.evaluation.evaluate.sections.fidelity import fidelity
from cosyn.evaluation.evaluate.sections.realism import realism
from cosyn.evaluation.evaluate.sections.speed import time_sampling
from cosyn.evaluation.evaluate.tiles import Generated, RealData, generation_jobs

__all__ = [
    "BARS", "DEFAULT_SECTIONS", "SECTIONS", "EvalConfig", "Generated", "RealData", "add_evaluate_parser", "bars",
    "comparison_grid", "consistency", "downstream", "evaluate", "fidelity", "generation_jobs", "histogram_panel",
    "morphology_figure", "realism", "time_sampling", "to_markdown",
]
