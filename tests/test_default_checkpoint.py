"""The shipped checkpoint loads, is small, and samples: `python app.py` opens onto it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tiny import text_encoder

from cosyn.core.classes import CONSEP
from cosyn.core.layout import Layout
from cosyn.model.pipeline import CoSynPipeline

DEFAULT = Path(__file__).resolve().parents[1] / "checkpoints" / "default"


def test_default_checkpoint_is_small_loads_and_samples_the_example_layout():
    assert sum(f.stat().st_size for f in DEFAULT.rglob("*") if f.is_file()) < 45 * 2**20  # the whole folder
    assert (DEFAULT / "MODEL_CARD.md").read_text().count("CoNSeP") >= 1
    pipe = CoSynPipeline.from_pretrained(DEFAULT, text_encoder=text_encoder())
    assert pipe.config.classes == CONSEP.to_list() and pipe.config.mpp == 0.5
    layout = Layout.load(Path(__file__).resolve().parents[1] / "assets" / "layouts" / "colon_gland_epithelial.json")
    tr = pipe.sample(layout, steps=4, seed=0)[0]
    assert tr.image.shape == (256, 256, 3) and tr.layout.mpp == 0.25  # drawn at 40x, delivered at 40x
    assert tr.params["stages"] == ["base", "texture"] and len(tr.params["second_stage_sha256"]) == 64
    assert tr.params["missed_centroids"] == 0  # every centroid is a pasted real nucleus of its class
    assert tr.params["largest_copy_um"] <= pipe.second_stage.settings.copy_cap_px * 0.25
    assert np.unique(tr.class_map).size > 1
