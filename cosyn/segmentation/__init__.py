"""A HoVer-Net-style nuclei segmenter built on MONAI: the downstream study's and the consistency
section's yardstick.

Modules, one job each:
- config: the architecture/post-processing (`SegmenterConfig`) and training (`SegTrainConfig`) settings;
- model: MONAI's FlexibleUNet (ResNet encoder, random init) with HoVer-Net's NP / HV / NC outputs;
- targets: HoVer-Net's training targets (MONAI's `ComputeHoVerMaps`), dihedral-consistent crops;
- postprocess: HoVer-Net's post-processing from MONAI's pathology transforms (Sobel of the HV maps,
  marker-controlled watershed), then the majority class of each instance;
- segmenter: the trained model with safetensors persistence and `predict`;
- train: the resumable training loop (bf16 autocast on CPU, per-step seeded batches).

Scoring against ground truth lives in `cosyn.evaluation.segmenter`, beside the metrics.
"""

from cosyn.segmentation.config import SegmenterConfig, SegTrainConfig
from cosyn.segmentation.segmenter import Segmenter, SegPrediction
from cosyn.segmentation.targets import SegTile
from cosyn.segmentation.train import train_segmenter

__all__ = ["SegPrediction", "SegTile", "SegTrainConfig", "Segmenter", "SegmenterConfig", "train_segmenter"]
