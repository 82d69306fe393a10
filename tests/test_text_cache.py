"""Prompt cache: every prompt training can draw is in it, and it answers like the encoder."""

from __future__ import annotations

import pytest
import torch
from conftest import SHARED_DATA, disc_sample
from tiny import text_encoder

from cosyn.core.classes import CONSEP
from cosyn.data.dataset import CropDataset, prepare_tile
from cosyn.data.formats import read_dataset
from cosyn.model.text_cache import PromptCache, all_structure_prompts, write_prompt_cache


def _drawn_prompts(tiles, crops: tuple[int, ...], positions: int) -> set[str]:
    out = set()
    for crop in crops:
        dataset = CropDataset(tiles, CONSEP, crop, 0.5)
        out |= {dataset[p]["prompt"] for p in range(positions)}
    return out


def test_every_prompt_drawn_from_disc_tiles_is_enumerated():
    tiles = [prepare_tile(disc_sample(n=n, size=(64, 64), seed=n, name=f"t{n}_000"), None) for n in (1, 3, 9, 16)]
    drawn = _drawn_prompts(tiles, (16, 32, 64), 400)
    assert len(drawn) > 20  # densities, class mixes and orders all vary
    assert drawn <= set(all_structure_prompts(CONSEP, ["colon"]))


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"real data not found at {SHARED_DATA}")
def test_every_prompt_drawn_from_consep_is_enumerated():
    reader = read_dataset(SHARED_DATA)
    tiles = [prepare_tile(reader[i], 0.5) for i in range(0, len(reader), 6)]
    drawn = _drawn_prompts(tiles, (64, 128), 1500)
    assert len(drawn) > 80
    assert drawn <= set(all_structure_prompts(CONSEP, ["colon"]))


def test_cache_answers_like_the_encoder(tmp_path):
    encoder = text_encoder()
    prompts = all_structure_prompts(CONSEP, ["colon"])[::97]
    cache = PromptCache(write_prompt_cache(encoder, prompts, tmp_path / "p.safetensors"))
    asked = [prompts[2], "", prompts[0], prompts[2]]
    states, masks = cache.encode(asked)
    ref_states, ref_masks = encoder.encode(asked)
    assert states.shape == ref_states.shape and states.dtype == torch.float32
    assert torch.equal(masks, ref_masks)
    # float16 storage; padding positions are masked out of cross-attention, so only real tokens count
    torch.testing.assert_close(states[masks], ref_states[masks], atol=5e-3, rtol=1e-2)
    assert (cache.name, cache.max_tokens, cache.dim) == (encoder.name, encoder.max_tokens, encoder.dim)


def test_cache_names_the_file_and_the_missing_prompt(tmp_path):
    path = write_prompt_cache(text_encoder(), ["a prompt"], tmp_path / "p.safetensors")
    with pytest.raises(KeyError, match="p.safetensors.*another prompt"):
        PromptCache(path).encode(["another prompt"])
    (tmp_path / "bad.safetensors").write_bytes(b"not a cache")
    with pytest.raises(ValueError, match="bad.safetensors: not a prompt cache"):
        PromptCache(tmp_path / "bad.safetensors")
