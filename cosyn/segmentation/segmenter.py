"""The trained segmenter: persistence (safetensors weights beside a JSON config, no pickle) and prediction."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cosyn.core.instances import paint_classes
from cosyn.io.fileio import atomic_write
from cosyn.segmentation.config import SegmenterConfig
from cosyn.segmentation.model import HV, NC, NP, branches, build_net, image_to_input
from cosyn.segmentation.postprocess import instance_classes, instance_map

CONFIG_NAME = "segmenter.json"
WEIGHTS_NAME = "segmenter.safetensors"


@dataclass
class SegPrediction:
    inst_map: np.ndarray  # (H, W) int32, ids 1..N
    inst_classes: dict[int, int]
    class_map: np.ndarray  # (H, W) uint8, each instance painted with its class


def save_weights(net: nn.Module, path: Path, extra: dict[str, torch.Tensor] | None = None) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    atomic_write(path, lambda p: save_file({**state, **(extra or {})}, p))


def load_weights(net: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Strict load that names the file when keys differ."""
    own = net.state_dict()
    missing, unexpected = set(own) - set(state), set(state) - set(own)
    reshaped = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or reshaped:
        raise ValueError(f"{path}: weights do not match the configured network (missing {sorted(missing)[:3]}, "
                         f"unexpected {sorted(unexpected)[:3]}, other shapes {reshaped[:3]})")
    net.load_state_dict(state)


@dataclass
class Segmenter:
    net: nn.Module
    config: SegmenterConfig
    train_info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(cls, config: SegmenterConfig, seed: int = 0) -> Segmenter:
        torch.manual_seed(seed)
        return cls(build_net(config), config)

    # -- persistence -------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Config JSON + safetensors weights; each file replaced atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_weights(self.net, folder / WEIGHTS_NAME)
        meta = {"config": self.config.to_dict(), "train": self.train_info}
        atomic_write(folder / CONFIG_NAME, lambda p: Path(p).write_text(json.dumps(meta, indent=1)))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Segmenter:
        folder = Path(folder)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name}: missing; a segmenter folder holds {CONFIG_NAME} "
                                        f"and {WEIGHTS_NAME}")
        meta = json.loads((folder / CONFIG_NAME).read_text())
        try:
            config = SegmenterConfig(**meta["config"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{folder / CONFIG_NAME}: not a segmenter config ({e})") from None
        net = build_net(config)
        load_weights(net, load_file(folder / WEIGHTS_NAME), folder / WEIGHTS_NAME)
        return cls(net.eval(), config, meta.get("train", {}))

    # -- inference ---------------------------------------------------------------------------------
    @torch.no_grad()
    def outputs(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """The three branches for one (H, W, 3) uint8 image at the segmenter's mpp: NP logits (2, H, W),
        HV maps (2, H, W) and NC probabilities (K, H, W)."""
        self.net.eval()
        h, w = image.shape[:2]
        s = self.config.stride
        ph, pw = -h % s, -w % s
        # Reflection keeps the border statistics natural; the pad is cropped off again.
        padded = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="reflect") if ph or pw else image
        device = next(self.net.parameters()).device
        out = self.net(image_to_input(padded[None]).to(device))[0:1, :, :h, :w].float().cpu()
        b = branches(out, self.config.num_classes)
        return {NP: b[NP][0].numpy(), HV: b[HV][0].numpy(), NC: b[NC][0].softmax(0).numpy()}

    def predict(self, image: np.ndarray) -> SegPrediction:
        """Instances and classes of one (H, W, 3) uint8 image at the segmenter's mpp."""
        out = self.outputs(image)
        inst = instance_map(out[NP], out[HV], self.config)
        classes = instance_classes(inst, out[NC])
        return SegPrediction(inst, classes, paint_classes(inst, classes))
