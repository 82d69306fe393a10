"""Fine-tuning across class sets: map label channels by class name, never by position."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from cosyn.core.classes import ClassSet
from cosyn.model.checkpoint import PipelineConfig
from cosyn.model.denoiser import GAUSSIAN_CHANNELS, JointDenoiser


def class_mapping(old: ClassSet, new: ClassSet) -> dict[int, int]:
    """new class id → old class id, for the classes whose names both sets share."""
    return {i: old.names.index(n) for i, n in enumerate(new.names) if n in old.names}


def _remap_conv(conv: nn.Conv2d, mapping: dict[int, int], new_count: int, dim: int, offset: int = 0) -> nn.Conv2d:
    """A copy of `conv` whose channels [offset:] along `dim` (0 = out, 1 = in) follow `mapping`;
    unmapped channels keep the fresh initialisation of a new layer."""
    in_ch = conv.in_channels if dim == 0 else offset + new_count
    out_ch = conv.out_channels if dim == 1 else offset + new_count
    fresh = nn.Conv2d(in_ch, out_ch, conv.kernel_size, padding=conv.padding, bias=conv.bias is not None)
    with torch.no_grad():
        w = fresh.weight.data
        src = conv.weight.data
        if offset:
            w.narrow(dim, 0, offset).copy_(src.narrow(dim, 0, offset))
        for new_i, old_i in mapping.items():
            w.narrow(dim, offset + new_i, 1).copy_(src.narrow(dim, offset + old_i, 1))
        if conv.bias is not None:
            if dim == 0:
                fresh.bias.data[:offset] = conv.bias.data[:offset]
                for new_i, old_i in mapping.items():
                    fresh.bias.data[offset + new_i] = conv.bias.data[offset + old_i]
            else:
                fresh.bias.data.copy_(conv.bias.data)
    return fresh


def remap_classes(model: JointDenoiser, config: PipelineConfig, classes: ClassSet,
                  log: Callable[[str], None]) -> tuple[JointDenoiser, PipelineConfig]:
    old = ClassSet(tuple(config.classes))
    if old.names == classes.names:
        return model, config
    mapping = class_mapping(old, classes)
    kept = [classes.names[i] for i in mapping if i > 0]
    fresh = [n for i, n in enumerate(classes.names) if i not in mapping]
    log(f"class sets differ: model {list(old.names)} → data {list(classes.names)}. "
        f"Kept by name: {kept or 'none'}; re-initialised: {fresh or 'none'}")
    new_cfg = copy.deepcopy(config)
    new_cfg.denoiser.num_classes = classes.num_classes
    new_cfg.classes = classes.to_list()
    new_model = copy.deepcopy(model)
    k = classes.num_classes
    new_model.label_in = _remap_conv(model.label_in, mapping, k, dim=1)
    point_map = {i - 1: j - 1 for i, j in mapping.items() if i > 0}
    new_model.points.proj = _remap_conv(model.points.proj, point_map, k - 1, dim=1)
    new_model.points.num_classes = k
    new_model.head[3] = _remap_conv(model.head[3], mapping, k, dim=0, offset=GAUSSIAN_CHANNELS)
    new_model.cfg = new_cfg.denoiser
    return new_model, new_cfg
