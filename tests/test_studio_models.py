"""Studio models and dataset checks: the checkpoint list, the pipeline cache, validation, class mapping."""

from __future__ import annotations

import os

import pytest
from test_train import _dataset
from tiny import text_encoder, tiny_pipeline

from cosyn.core.classes import CONSEP, PANNUKE
from cosyn.model.checkpoint import CheckpointError
from cosyn.studio import models
from cosyn.studio.datasets import mapping_text, validate_dataset
from cosyn.studio.models import PipelineCache, list_models, model_view


@pytest.fixture
def encoder_loads(monkeypatch) -> list[str]:
    """The names the studio asked to load; each load answers with the session's one MiniLM."""
    loads: list[str] = []
    monkeypatch.setattr(models, "TextEncoder", lambda name: loads.append(name) or text_encoder())
    return loads


@pytest.fixture
def root(tmp_path, encoder_loads):
    tiny_pipeline().save_pretrained(tmp_path / "zeta")
    tiny_pipeline(seed=1).save_pretrained(tmp_path / "default")
    (tmp_path / "default" / "MODEL_CARD.md").write_text("# the default")
    (tmp_path / "half-written").mkdir()  # no weights: not offered
    return tmp_path


def test_models_are_listed_default_first_with_their_cards(root):
    found = list_models(root)
    assert [m.name for m in found] == ["default", "zeta"]
    assert found[0].card == "# the default" and "has no MODEL_CARD.md" in found[1].card
    assert list_models(root / "missing") == []


def test_the_cache_loads_once_reloads_changed_weights_and_shares_the_text_encoder(root, encoder_loads):
    cache = PipelineCache(root)
    a, b = cache.get("default"), cache.get("zeta")
    assert cache.get("default") is a and a.text_encoder is b.text_encoder
    assert len(encoder_loads) == 1
    tiny_pipeline(seed=2).save_pretrained(root / "default")
    weights = root / "default" / "model.safetensors"
    os.utime(weights, (weights.stat().st_atime, weights.stat().st_mtime + 5))
    assert cache.get("default") is not a


def test_names_outside_the_checkpoint_folder_are_refused(root):
    cache = PipelineCache(root)
    for name in ("../default", "missing", "half-written"):
        with pytest.raises(CheckpointError):
            cache.get(name)


def test_model_view_follows_the_config_and_falls_back_without_a_model(root):
    view = model_view(PipelineCache(root), "default", 0.25)
    assert view.classes == CONSEP.to_list() and view.side_limit == 2048  # 1024 px at 0.5 µm/px
    assert model_view(PipelineCache(root), None, 0.25).classes == CONSEP.to_list()


def test_validation_reports_the_dataset_and_the_class_mapping(tmp_path):
    checked = validate_dataset(_dataset(tmp_path / "ds"))
    assert (checked.report.n_samples, checked.report.fmt, checked.classes) == (3, "folder", CONSEP)
    assert len(checked.examples) == 3 and checked.examples[0][0].shape == (64, 64, 3)
    assert "From scratch" in mapping_text(None, CONSEP)
    text = mapping_text(CONSEP, PANNUKE)
    assert "kept by name: ['inflammatory', 'epithelial']" in text
    assert "dropped from the model: ['other', 'spindle']" in text


def test_the_cache_keeps_the_most_recently_used_within_its_capacity(root):
    cache = PipelineCache(root, capacity=1)
    a = cache.get("default")
    assert cache.get("default") is a
    cache.get("zeta")  # fills the one slot: the default is dropped
    assert cache.get("default") is not a


def test_the_card_inlines_its_own_images_and_nothing_outside_its_folder(tmp_path):
    from cosyn.studio.models import inline_images

    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / "grid.jpg").write_bytes(b"\xff\xd8jpeg bytes")
    (tmp_path / "secret.png").write_bytes(b"\x89PNGsecret")
    md = inline_images("![grid](grid.jpg) ![s](../secret.png) ![none](missing.png) ![w](https://x.org/a.png)",
                       folder)
    assert "![grid](data:image/jpeg;base64,/9hqcGVnIGJ5dGVz)" in md
    assert "![s](../secret.png)" in md and "![none](missing.png)" in md and "![w](https://x.org/a.png)" in md


def test_a_checkpoint_without_a_checksum_is_refused_unless_the_studio_trusts_it(root, tmp_path):
    from cosyn.io.fileio import CHECKSUMS_NAME
    from cosyn.studio.config import parse_args
    from cosyn.studio.context import StudioContext
    from cosyn.studio.models import unverified_warning

    (root / "zeta" / CHECKSUMS_NAME).unlink()  # deleting the record must not switch the check off
    zeta, default = PipelineCache(root).info("zeta"), PipelineCache(root).info("default")
    assert zeta.unverified and not default.unverified and unverified_warning(default, False) == ""
    with pytest.raises(CheckpointError, match="no checksum recorded"):
        PipelineCache(root).get("zeta")
    refused = unverified_warning(zeta, False)
    assert "--trust-unverified" in refused and f"cosyn checksum {root / 'zeta'}" in refused
    assert "It is loaded because" in unverified_warning(zeta, True)
    # the operator's flag reaches the cache, which then loads it
    trusted = parse_args(["--trust-unverified", "--checkpoints", str(root)], cwd=tmp_path)
    assert trusted.trust_unverified and not parse_args([], cwd=tmp_path).trust_unverified
    assert StudioContext.create(trusted).models.get("zeta") is not None


def test_choosing_an_unverified_model_warns_on_the_page(root, tmp_path):
    from cosyn.core.layout import Layout
    from cosyn.io.fileio import CHECKSUMS_NAME
    from cosyn.studio import canvas as cv
    from cosyn.studio.config import StudioConfig
    from cosyn.studio.ui import build_app

    (root / "zeta" / CHECKSUMS_NAME).unlink()
    demo = build_app(StudioConfig(checkpoints=root, runs=tmp_path / "runs", outputs=tmp_path / "out"))
    on_model = next(f for f in demo.fns.values() if f.name == "on_model")
    canvas = cv.new_canvas(Layout(64, 64, list(CONSEP.to_list()), [], 0.25, "colon"))
    status = demo.cosyn_synthesize.status
    with pytest.warns(UserWarning, match="has no recorded checksum"):  # gr.Warning, outside a page
        chosen = on_model.fn("zeta", canvas, "neutral", None, None, True, "")
    assert chosen[status].startswith("Ready: model `zeta`. ⚠ `zeta` has no recorded checksum")
    assert chosen[status].endswith(f"record a checksum with `cosyn checksum {root / 'zeta'}`.")
    assert on_model.fn("default", canvas, "neutral", None, None, True, "")[status] == "Ready: model `default`."
