"""The second stage: a base triple brought to a finer µm/px. `Refiner` is the learned stage (a folder of
its own in the checkpoint, safetensors); `Upsampler` is what runs when a checkpoint has none: the same
smooth upsampling of image, labels and distance, without a network. Both re-cut the instances at the new
resolution from the same centroids (`upsampled_triple`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from cosyn.core.triple import Triple
from cosyn.data.targets import point_map
from cosyn.io.fileio import ChecksumError, atomic_dir, record_checksum, verified_sha256
from cosyn.model.instances import cut_instances
from cosyn.refiner.network import RefinerConfig, RefinerNet, conditioning
from cosyn.refiner.tensors import bicubic, from_unit, to_unit, upsampled_inputs, upsampled_labels

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# The Upsampler's unsharp mask, chosen on the realism yardstick for a 2x step (docs/model.md, "Refiner");
# sigma in output pixels, scaled with the step.
SHARPEN_SIGMA, SHARPEN_AMOUNT = 1.0, 0.5
RESIDUAL_SCALE = 0.25  # the diffusion formulation's residuals, scaled to about unit variance
DIFFUSION_STEPS = 4


class RefinerError(ValueError):
    """A refiner folder that cannot be loaded; the message names the file and the problem."""


class Refiner:
    def __init__(self, net: RefinerNet, classes: list[str], base_mpp: float, sha256: str = "") -> None:
        self.net = net.eval()
        self.classes = list(classes)
        self.base_mpp = float(base_mpp)
        self.sha256 = sha256

    @property
    def scale(self) -> int:
        return self.net.cfg.scale

    @property
    def output_mpp(self) -> float:
        return self.base_mpp / self.scale

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> Refiner:
        folder = Path(folder)
        cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        try:
            meta = json.loads(cfg_path.read_text())
            cfg = RefinerConfig.from_dict(meta["refiner"])
            classes, base_mpp = list(meta["classes"]), float(meta["base_mpp"])
        except FileNotFoundError:
            raise RefinerError(f"{cfg_path}: missing; a refiner folder holds {CONFIG_NAME} and {WEIGHTS_NAME}") \
                from None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
            raise RefinerError(f"{cfg_path}: invalid refiner config ({e})") from None
        net = RefinerNet(cfg)
        try:
            sha256 = verified_sha256(w_path)
            state = load_file(w_path)  # safetensors: nothing unpickles
            net.load_state_dict({k: v.float() for k, v in state.items()})
        except FileNotFoundError:
            raise RefinerError(f"{w_path}: missing; a refiner folder holds {CONFIG_NAME} and {WEIGHTS_NAME}") from None
        except ChecksumError as e:
            raise RefinerError(str(e)) from None
        except (SafetensorError, OSError, RuntimeError, ValueError) as e:
            raise RefinerError(f"{w_path}: weights do not load into {cfg_path.name}'s refiner ({e})") from None
        return cls(net, classes, base_mpp, sha256=sha256)

    def refine_triple(self, base: Triple, seed: int = 0) -> Triple:
        """A base triple at the base model's µm/px → the triple at the refiner's, its image refined."""
        h, w = (self.scale * v for v in base.class_map.shape)
        layout = base.layout.rescaled(w, h, self.output_mpp)
        image = self.refine(base.image, base.dist_map, base.class_map,
                            point_map(layout.xy(), layout.class_ids(), h, w), seed)
        return upsampled_triple(base, self.scale, self.net.cfg.num_classes, image,
                                {"stages": ["base", "refiner"], "refiner_sha256": self.sha256})

    @torch.no_grad()
    def refine(self, image: np.ndarray, dist: np.ndarray, class_map: np.ndarray, points: np.ndarray,
               seed: int = 0) -> np.ndarray:
        """A base triple (image (h,w,3) uint8, dist (h,w), class ids (h,w)) and the point map at the
        output resolution (scale·h, scale·w) → the image at the output resolution, uint8."""
        cfg = self.net.cfg
        image_up, dist_up, probs = upsampled_inputs(
            to_unit([image]), torch.from_numpy(np.asarray(dist, np.float32))[None, None],
            torch.from_numpy(np.asarray(class_map))[None], cfg.num_classes, cfg.scale)
        pts = torch.from_numpy(np.asarray(points, np.int64))[None]
        gen = torch.Generator().manual_seed(int(seed))
        cond = conditioning(image_up, dist_up, probs, pts, cfg, gen)
        if cfg.formulation == "gan":
            return from_unit(image_up + self.net(cond))[0]
        x = torch.randn(image_up.shape, generator=gen)
        residual = x
        for i in range(DIFFUSION_STEPS):
            t, s = 1 - i / DIFFUSION_STEPS, 1 - (i + 1) / DIFFUSION_STEPS
            a_t, s_t = math.cos(t * math.pi / 2), math.sin(t * math.pi / 2)
            v = self.net(torch.cat([cond, x, torch.full_like(x[:, :1], t)], 1))
            residual, eps = a_t * x - s_t * v, s_t * x + a_t * v
            x = math.cos(s * math.pi / 2) * residual + math.sin(s * math.pi / 2) * eps
        return from_unit(image_up + RESIDUAL_SCALE * residual)[0]


class Upsampler:
    """The second stage of a checkpoint without a refiner: the image bicubic then unsharp-masked, labels
    and distance smooth.

    Measured against the real CoNSeP validation tiles at 0.25 µm/px it is the best second stage we have
    (docs/model.md, "Refiner"): every learned refiner so far left a trace a classifier finds, while the
    unsharp mask (as slide scanners apply) brings the Laplacian-variance ratio from 0.62 to 0.84 and
    leaves the classifier's AUC where bicubic alone has it."""

    def __init__(self, num_classes: int, scale: int = 2) -> None:
        self.num_classes, self.scale = num_classes, scale

    def refine_triple(self, base: Triple, seed: int = 0) -> Triple:
        """`seed` is unused (nothing here is random); it keeps the Refiner's signature. At scale 1 nothing is
        interpolated, so nothing is sharpened either."""
        image = from_unit(bicubic(to_unit([base.image]), self.scale))[0]
        if self.scale > 1:
            image = unsharp_mask(image, SHARPEN_SIGMA * self.scale / 2, SHARPEN_AMOUNT)
        return upsampled_triple(base, self.scale, self.num_classes, image, {"stages": ["base", "upsampler"]})


def unsharp_mask(image: np.ndarray, sigma: float, amount: float) -> np.ndarray:
    """image + amount × (image − Gaussian blur of σ px), uint8 in and out."""
    f = image.astype(np.float32)
    return np.clip(f + amount * (f - cv2.GaussianBlur(f, (0, 0), sigma)), 0, 255).round().astype(np.uint8)


def upsampled_triple(base: Triple, scale: int, num_classes: int, image: np.ndarray, params: dict) -> Triple:
    """A base triple at `scale` times its resolution with `image` (already at that size): the distance
    map bilinear, the label the argmax of the bilinear one-hot (smooth borders, not blocks), and the
    instances cut again at the new resolution from the same centroids."""
    h, w = (scale * v for v in base.class_map.shape)
    layout = base.layout.rescaled(w, h, base.layout.mpp / scale)
    dist, probs = upsampled_labels(torch.from_numpy(base.dist_map)[None, None],
                                   torch.from_numpy(base.class_map)[None], num_classes, scale)
    dist_map, class_map = dist[0, 0].clamp(0, 1).numpy(), probs[0].argmax(0).byte().numpy()
    cut = cut_instances(dist_map, class_map, layout.xy(), layout.class_ids())
    params = {**base.params, **params, "output_mpp": layout.mpp, "missed_centroids": len(cut.missed),
              "missed_indices": [int(i) for i in cut.missed]}
    return Triple(image, class_map, cut.inst_map, dist_map, dict(cut.inst_classes), layout, params)


def check_follows(refiner: Refiner, classes: list[str], base_mpp: float, where: Path) -> None:
    """A refiner works on one base model's triples: the same classes, at the same µm/px."""
    if refiner.classes != list(classes) or abs(refiner.base_mpp - base_mpp) > 1e-9:
        raise RefinerError(
            f"{where}: the refiner follows a base model of classes {refiner.classes} at {refiner.base_mpp} µm/px, "
            f"not this one's {list(classes)} at {base_mpp} µm/px")


def save_refiner(refiner: Refiner, folder: str | Path) -> None:
    """config.json + model.safetensors as `folder`, replaced whole and atomically."""
    with atomic_dir(Path(folder)) as tmp:
        meta = {"refiner": refiner.net.cfg.to_dict(), "classes": refiner.classes, "base_mpp": refiner.base_mpp}
        (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=1))
        state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in refiner.net.state_dict().items()}
        save_file(state, tmp / WEIGHTS_NAME, metadata={"format": "pt"})
        (tmp / WEIGHTS_NAME).chmod(0o644)
        record_checksum(tmp / WEIGHTS_NAME)
