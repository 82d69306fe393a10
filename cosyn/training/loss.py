"""The joint training loss: v-prediction MSE on image and distance map (min-SNR weighted) plus
the categorical diffusion loss on the label map; with an `Adversary`, plus its judgement of the
image the model predicts at low noise (cosyn.training.adversarial)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from torch import nn

from cosyn.model.diffusion.categorical import MultinomialDiffusion, index_to_log_onehot
from cosyn.model.diffusion.gaussian import dist_to_model, image_to_model, min_snr_weight
from cosyn.training.config import TrainConfig


def joint_loss(model: nn.Module, batch: dict, text: torch.Tensor, mask: torch.Tensor, noise_sched: DDPMScheduler,
               categorical: MultinomialDiffusion, cfg: TrainConfig, gen: torch.Generator) -> dict[str, torch.Tensor]:
    # Everything random is drawn on the model's device with `gen` (a generator on that device):
    # on a GPU the noising of a large batch would otherwise cost more than the step itself.
    dev = next(model.parameters()).device
    x0 = torch.cat([image_to_model(batch["image"].to(dev)), dist_to_model(batch["dist"].to(dev))], 1)
    b, k = x0.shape[0], categorical.num_classes
    t = torch.randint(0, noise_sched.config.num_train_timesteps, (b,), generator=gen, device=dev)
    noise = torch.randn(x0.shape, generator=gen, device=dev)
    x_t = noise_sched.add_noise(x0, noise, t)
    target = noise_sched.get_velocity(x0, noise, t)
    log_x0 = index_to_log_onehot(batch["class_map"].to(dev), k)
    log_xt = categorical.q_sample(log_x0, t, generator=gen)
    points = batch["points"].to(dev)
    if cfg.point_drop > 0:
        keep = (torch.rand(b, generator=gen, device=dev) >= cfg.point_drop).view(b, 1, 1)
        points = points * keep
    out = model(x_t[:, :3], x_t[:, 3:], log_xt.exp(), points, t, text.to(dev), mask.to(dev))
    w = min_snr_weight(noise_sched.alphas_cumprod.to(dev)[t], cfg.min_snr_gamma)
    img = (F.mse_loss(out.v_image.float(), target[:, :3], reduction="none").mean((1, 2, 3)) * w).mean()
    dist = (F.mse_loss(out.v_dist.float(), target[:, 3:], reduction="none").mean((1, 2, 3)) * w).mean()
    label = categorical.loss(out.label_logits.float(), log_x0, log_xt, t, ce_weight=cfg.ce_weight).mean()
    total = cfg.w_image * img + cfg.w_dist * dist + cfg.w_label * label
    return {"loss": total, "image": img, "dist": dist, "label": label}
