"""Property-based fuzzing of the parsers of configs and settings: a training config (`--config` / the
Train tab), a checkpoint's `config.json`, and the sampling settings (CLI, studio, API). Whatever the input,
the answer is a valid object or the project's own error, never another exception; and what is accepted
holds its documented ranges. 2,000 examples per parser, derandomized (the same on every run).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, fields
from pathlib import Path

from fuzz_values import FUZZ, json_values, mutated, scalars
from hypothesis import given
from hypothesis import strategies as st

from cosyn.model.checkpoint import PIPELINE_RANGES, CheckpointError, PipelineConfig, read_pipeline_config
from cosyn.model.denoiser import DENOISER_RANGES
from cosyn.model.settings import SETTINGS_RANGES, SamplingSettings
from cosyn.training.config import TRAIN_RANGES, TrainConfig, merged_config, read_options

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = json.loads((ROOT / "checkpoints" / "default" / "config.json").read_text())

TRAIN = {**asdict(TrainConfig()), "data": "data", "denoiser": {"block_out_channels": [16, 32]}}
TRAIN_PATHS = [(f.name,) for f in fields(TrainConfig)] + [("denoiser", "block_out_channels"),
                                                          ("denoiser", "block_out_channels", 0), ("unknown",)]
PIPELINE_PATHS = ([(k,) for k in DEFAULT_CONFIG] + [("denoiser", k) for k in DEFAULT_CONFIG["denoiser"]]
                  + [("denoiser", "block_out_channels", 0), ("classes", 1), ("schedule", "num_train_timesteps"),
                     ("schedule", "beta_start"), ("schedule", "prediction_type"), ("second_stage", "name"),
                     ("denoiser", "attention_levels", 0)])
# Values at and past the ends of the ranges, besides the generic telling ones.
edges = st.sampled_from([0, 1, 2, 3, -1, 2**31, 2**63, 10**30, 1e30, -1e-9, 0.1, 0.99999, 1.0000001, 65504.0,
                         1e-13, 4096, 8193, 10**4300])


def _within(obj: object, table: dict) -> None:
    for name, (low, high) in table.items():
        value = getattr(obj, name)
        for item in value if isinstance(value, (list, tuple)) else (value,):
            assert low <= item <= high and math.isfinite(item), (name, value)


@FUZZ
@given(data=st.one_of(mutated(TRAIN, TRAIN_PATHS), st.dictionaries(st.sampled_from([p[0] for p in TRAIN_PATHS]),
                                                                     st.one_of(json_values, edges), max_size=4)))
def test_a_training_config_is_valid_or_refused_by_name(data):
    try:
        cfg = merged_config(data)
    except ValueError as e:
        assert str(e)
        return
    _within(cfg, TRAIN_RANGES)


@FUZZ
@given(data=st.one_of(mutated(TRAIN, TRAIN_PATHS), json_values, st.binary(max_size=40)))
def test_a_training_config_file_is_options_or_an_error_naming_it(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "train.json"
    path.write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())
    try:
        opts = read_options(path)
    except ValueError as e:
        assert str(path) in str(e)
        return
    assert isinstance(opts, dict)


@FUZZ
@given(data=st.one_of(mutated(DEFAULT_CONFIG, PIPELINE_PATHS), mutated(DEFAULT_CONFIG, PIPELINE_PATHS),
                      json_values))
def test_a_checkpoint_config_is_valid_or_refused_naming_the_file(tmp_path_factory, data):
    folder = tmp_path_factory.getbasetemp()
    (folder / "config.json").write_text(json.dumps(data))
    try:
        config = read_pipeline_config(folder)
    except CheckpointError as e:
        assert str(folder / "config.json") in str(e)
        return
    assert isinstance(config, PipelineConfig)
    _within(config, PIPELINE_RANGES)
    _within(config.denoiser, DENOISER_RANGES)


settings_values = st.one_of(scalars, edges, st.floats(allow_nan=True, allow_infinity=True), st.integers())


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(["steps", "guidance", "sampler", "seed", "n", "refine"]),
                               st.one_of(settings_values, st.sampled_from(["ddim", "dpm++", "unipc"])), max_size=3))
def test_sampling_settings_are_valid_or_refused_by_name(changes):
    try:
        settings = SamplingSettings(**changes)
    except ValueError as e:
        assert any(name in str(e) for name in changes) or "sampler" in str(e)
        return
    _within(settings, SETTINGS_RANGES)
