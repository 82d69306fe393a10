"""The segmenter's settings: what is saved beside its weights, and how it is trained."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from cosyn.core.classes import ClassSet
from cosyn.model.ranges import Bounds, check_numbers

# Each training number's sane range (inclusive), checked on construction: `--segmenter-steps -5` ran on.
SEG_TRAIN_RANGES: dict[str, Bounds] = {
    "steps": (1, 1_000_000), "batch": (1, 256), "crop": (32, 1024), "lr": (1e-8, 1.0), "warmup": (0, 1_000_000),
    "weight_decay": (0.0, 1.0), "colour_jitter": (0.0, 1.0), "seed": (0, 2**32 - 1), "save_every": (1, 1_000_000),
}


@dataclass
class SegmenterConfig:
    """Architecture, working resolution and post-processing; saved beside the weights.

    `classes` includes background (id 0). HoVer-Net's defaults hold at 0.25 µm/px: Sobel kernel 21
    on the HV maps and marker threshold 0.4 (Graham et al. 2019, `process_np_hv`).
    """

    classes: list[str]
    mpp: float = 0.25
    backbone: str = "resnet18"
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)
    np_threshold: float = 0.5
    sobel_kernel: int = 21
    marker_threshold: float = 0.4
    min_area_um2: float = 0.625  # HoVer-Net drops objects under 10 px at 0.25 µm/px
    keep_unmarked: bool = False  # HoVer-Net drops foreground no marker reaches; True makes each such blob a nucleus

    def __post_init__(self) -> None:
        self.classes = ClassSet(tuple(self.classes)).to_list()
        self.decoder_channels = tuple(int(c) for c in self.decoder_channels)

    @property
    def num_classes(self) -> int:
        """Nucleus classes plus background."""
        return len(self.classes)

    @property
    def stride(self) -> int:
        """Input sides must be multiples of this (the ResNet encoder downsamples 5 times)."""
        return 32

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "decoder_channels": list(self.decoder_channels)}


@dataclass
class SegTrainConfig:
    """Training budget and recipe. The defaults are the measured run of docs/downstream.md."""

    steps: int = 2500
    batch: int = 8
    crop: int = 160
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 1e-4
    colour_jitter: float = 0.1  # sd of the per-channel gain; the offset's sd is 160x this, in 0..255 units
    seed: int = 0
    bf16: bool = True
    save_every: int = 200  # steps between resumable checkpoints when training into a folder

    def __post_init__(self) -> None:
        check_numbers(self, SEG_TRAIN_RANGES, "segmenter training options")
