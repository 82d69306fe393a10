"""Precomputed prompt embeddings, for training where the text-encoder package is not installed
(a lent GPU machine, say, where the 83 MB encoder wheel does not fit the transfer).

The structure prompts of one class set and tissue list are a finite set: every ordered subset of
nucleus classes × density word × dominant class (or none), plus the empty-tissue prompt and the
empty string used for classifier-free guidance. All of them are encoded once where the encoder
is installed and stored in one safetensors file, float16 and trimmed to the longest prompt: the
denoiser masks padding tokens out of cross-attention, so their states never matter.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from cosyn.core.classes import ClassSet
from cosyn.core.layout import Layout
from cosyn.data.targets import prompt_vocabulary, structure_prompt
from cosyn.io.fileio import atomic_write
from cosyn.model.text import TextEncoder


class _FixedOrder:
    """Stands in for structure_prompt's rng: 'shuffles' class names into a given order."""

    def __init__(self, order: Sequence[str]) -> None:
        self.order = list(order)

    def shuffle(self, names: list[str]) -> None:
        names.sort(key=self.order.index)


def _density_targets() -> list[float]:
    """One density (nuclei per 100 µm²) inside each level of the vocabulary."""
    targets, low = [], 0.0
    for level in prompt_vocabulary()["density"]["levels"]:
        high = level["below"]
        targets.append((low + high) / 2 if high is not None else 2 * low + 1)
        low = high if high is not None else low
    return targets


def _layout(classes: ClassSet, counts: dict[int, int], density: float, tissue: str) -> Layout:
    n = sum(counts.values())
    side = max(16, math.ceil(math.sqrt(n)))
    ids = np.array([c for c, k in counts.items() for _ in range(k)])
    xy = np.stack([np.arange(n) % side, np.arange(n) // side], 1).astype(float)
    mpp = math.sqrt(n * 100.0 / density) / side  # n nuclei per (side · mpp)² µm² is `density` per 100 µm²
    return Layout.from_arrays(side, side, classes, xy, ids, mpp=mpp, tissue=tissue)


def _dominant_weight(k: int) -> int:
    """A count that makes one of `k` classes (the others at 1) dominant in the vocabulary's sense."""
    share = prompt_vocabulary()["dominant"]["min_fraction"]
    return max(2, math.ceil(share * (k - 1) / (1 - share)) + 1)


def all_structure_prompts(classes: ClassSet, tissues: Iterable[str]) -> list[str]:
    """Every prompt `structure_prompt` can write for layouts of `classes` in `tissues`, and ""."""
    out = {""}
    nuclei = list(range(1, classes.num_classes))
    for tissue in tissues:
        out.add(structure_prompt(Layout(width=16, height=16, classes=list(classes.names), tissue=tissue)))
        for k in range(1, len(nuclei) + 1):
            w = _dominant_weight(k)
            for subset in itertools.combinations(nuclei, k):
                mixes = [{c: 1 for c in subset}] + [{c: (w if c == d else 1) for c in subset} for d in subset]
                for counts, density in itertools.product(mixes, _density_targets()):
                    layout = _layout(classes, counts, density, tissue)
                    for order in itertools.permutations(classes.names[c] for c in subset):
                        out.add(structure_prompt(layout, rng=_FixedOrder(order)))
    return sorted(out)


def write_prompt_cache(encoder: TextEncoder, prompts: Sequence[str], path: str | Path,
                       chunk: int = 256) -> Path:
    """Encode `prompts` with a TextEncoder and store them (float16, padding trimmed). Chunked:
    class sets with many classes have tens of thousands of prompts."""
    path = Path(path)
    parts = [encoder.encode(list(prompts[i:i + chunk])) for i in range(0, len(prompts), chunk)]
    states = torch.cat([p[0].half() for p in parts])
    masks = torch.cat([p[1] for p in parts])
    length = int(masks.sum(1).max())
    tensors = {"states": states[:, :length].contiguous(), "masks": masks[:, :length].contiguous()}
    meta = {"prompts": json.dumps(list(prompts)), "encoder": encoder.name, "max_tokens": str(encoder.max_tokens)}
    # atomic: a killed or failed write leaves no half cache, and a read-only or full disk is said in words
    atomic_write(path, lambda tmp: _save(tensors, tmp, meta))
    return path


def _save(tensors: dict[str, torch.Tensor], path: str, metadata: dict[str, str]) -> None:
    """safetensors' save_file, whose failure to write (a full disk) is a SafetensorError, as an OSError."""
    try:
        save_file(tensors, path, metadata=metadata)
    except SafetensorError as e:
        raise OSError(f"{path}: {e}") from None


class PromptCache:
    """A TextEncoder look-alike that answers from a file written by `write_prompt_cache`."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                states, masks = f.get_tensor("states"), f.get_tensor("masks").bool()
            prompts = json.loads(meta["prompts"])
            self.name, self.max_tokens = meta["encoder"], int(meta["max_tokens"])
        except (OSError, KeyError, ValueError, SafetensorError) as e:
            raise ValueError(f"{path}: not a prompt cache ({type(e).__name__}: {e})") from None
        self.path, self.dim = path, states.shape[-1]
        pad = self.max_tokens - states.shape[1]
        states = torch.nn.functional.pad(states, (0, 0, 0, pad))
        masks = torch.nn.functional.pad(masks, (0, pad))
        self._index = {p: i for i, p in enumerate(prompts)}
        self._states, self._masks = states, masks  # float16 until asked for: caches can be large

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, D) float32 token states and (B, L) bool mask, as TextEncoder.encode."""
        missing = [p for p in prompts if p not in self._index]
        if missing:
            raise KeyError(f"{self.path}: prompt not in the cache: {missing[0]!r}")
        rows = torch.tensor([self._index[p] for p in prompts])
        return self._states[rows].float(), self._masks[rows]

    @property
    def prompts(self) -> set[str]:
        return set(self._index)
