"""The part of a triple an edit keeps, held fixed while the model samples the rest (RePaint's replacement).

After every sampler step the known region of the sample is replaced by the real triple noised to the
step's level, q(x_s | x_0) for the image and distance, the categorical forward process for the label:
the model's next step then sees real context at the noise level it expects, and the regenerated part
grows into it. At the last step the known region is the real triple itself.

Callers hand the pipeline plain arrays (`KnownRegion`); the tensors and the noising (`HeldRegion`) stay
inside the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cosyn.model.diffusion.categorical import MultinomialDiffusion, index_to_log_onehot
from cosyn.model.diffusion.gaussian import dist_to_model, image_to_model


@dataclass(frozen=True)
class KnownRegion:
    """What to keep, at the base model's canvas: image (h,w,3) uint8, dist (h,w) in [0,1], class ids (h,w),
    and `regenerate` (h,w) bool, True where the model samples anew."""

    image: np.ndarray
    dist: np.ndarray
    class_map: np.ndarray
    regenerate: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.class_map.shape[:2])


@dataclass
class HeldRegion:
    x0: torch.Tensor  # (1, 4, h, w): image and distance map in the model's [-1, 1]
    label: torch.Tensor  # (1, h, w) class ids
    keep: torch.Tensor  # (1, 1, h, w): 1 where the real triple is kept, 0 where the model regenerates

    @classmethod
    def of(cls, region: KnownRegion) -> HeldRegion:
        img = image_to_model(torch.from_numpy(np.ascontiguousarray(region.image)).permute(2, 0, 1)[None])
        d = dist_to_model(torch.from_numpy(np.asarray(region.dist, np.float32))[None, None])
        keep = torch.from_numpy(~np.asarray(region.regenerate, bool)).float()[None, None]
        return cls(torch.cat([img, d], 1), torch.from_numpy(np.asarray(region.class_map, np.int64))[None], keep)

    def impose(self, x_img: torch.Tensor, x_dist: torch.Tensor, log_label: torch.Tensor, s: int,
               alphas_cumprod: torch.Tensor, categorical: MultinomialDiffusion,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The sample at level `s` (-1: the end) with the known region replaced."""
        n, device = x_img.shape[0], x_img.device
        log_x0 = index_to_log_onehot(self.label.expand(n, -1, -1), categorical.num_classes)
        if s < 0:
            known_x, known_log = self.x0.expand(n, -1, -1, -1), log_x0
        else:
            a = alphas_cumprod[s].float()
            noise = torch.randn((n, *self.x0.shape[1:]), generator=generator)
            known_x = a.sqrt() * self.x0 + (1 - a).sqrt() * noise
            known_log = categorical.q_sample(log_x0, torch.full((n,), s, dtype=torch.long), generator=generator)
        keep = self.keep.to(device)
        x = keep * known_x.to(device) + (1 - keep) * torch.cat([x_img, x_dist], 1)
        log_label = torch.where(keep.bool(), known_log.to(device, log_label.dtype), log_label)
        return x[:, :3], x[:, 3:], log_label
