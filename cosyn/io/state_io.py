"""Pickle-free persistence of nested training state (optimizer, EMA, RNG).

torch.save would pickle; instead every tensor leaf goes into one safetensors file and the
rest of the tree (dict keys, lists, numbers, strings) into JSON beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

_TENSOR = "__tensor__"


def _split(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous()
        return {_TENSOR: prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[_split(k, f"{prefix}.k{i}", tensors), _split(v, f"{prefix}.{i}", tensors)]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        return {"__list__" if isinstance(obj, list) else "__tuple__":
                [_split(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot persist {type(obj).__name__} at {prefix!r} without pickle")


def _join(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if _TENSOR in obj:
            return tensors[obj[_TENSOR]]
        if "__dict__" in obj:
            return {_join(k, tensors): _join(v, tensors) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            return [_join(v, tensors) for v in obj["__list__"]]
        if "__tuple__" in obj:
            return tuple(_join(v, tensors) for v in obj["__tuple__"])
    return obj


def save_state(obj: Any, path: Path) -> None:
    """Write `path`.safetensors + `path`.json."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _split(obj, "s", tensors)
    save_file(tensors, str(path) + ".safetensors")
    Path(str(path) + ".json").write_text(json.dumps(tree))


def load_state(path: Path) -> Any:
    tensors = load_file(str(path) + ".safetensors")
    return _join(json.loads(Path(str(path) + ".json").read_text()), tensors)
