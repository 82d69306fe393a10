"""Adversarial fine-tuning of the denoiser's x̂0 at low noise.

The diffusion loss alone teaches the mean of what a noised crop could have been: at low noise that
mean is the real tile with its finest texture averaged away, which is what makes samples soft. Here a
label-conditioned PatchGAN (the refiner's, hinge loss as in pix2pix/SPADE) judges the image x̂0 the
model predicts from a lightly noised real crop against the crop itself, given the crop's label and
distance maps; the model is pushed towards predictions the judge cannot tell from tissue. Only steps
with t < `max_t` are judged: at high noise x̂0 is a blurry guess by design, and the judge would only
teach the model to hallucinate layout-free texture there. The diffusion loss stays on and anchors
content and layout.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from cosyn.io.state_io import load_state, save_state
from cosyn.refiner.network import PatchDiscriminator, hinge_d

WEIGHTS = "discriminator.safetensors"
OPTIMIZER = "optim_d"


class Adversary:
    """The judge and its optimiser. `judge` updates it and returns the generator's loss."""

    def __init__(self, num_classes: int, max_t: int, lr: float, device: torch.device | str = "cpu") -> None:
        self.max_t = max_t
        self.net = PatchDiscriminator(num_classes).to(device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr, betas=(0.5, 0.999))

    def judge(self, fake: torch.Tensor, real: torch.Tensor, dist: torch.Tensor,
              label_probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One hinge step of the judge on (real, fake.detach()); then (generator loss, judge loss).

        Images in the model's [-1, 1]; `dist` and `label_probs` are the real crop's, so the judge asks
        "is this the tissue these labels describe", not only "is this tissue"."""
        d_real = self.net(real, dist, label_probs)[-1].float()
        d_fake = self.net(fake.detach(), dist, label_probs)[-1].float()
        loss_d = hinge_d(d_real, d_fake)
        self.optimizer.zero_grad(set_to_none=True)
        loss_d.backward()
        self.optimizer.step()
        # the generator's backward also reaches the judge's weights; the next zero_grad drops that
        loss_g = -self.net(fake, dist, label_probs)[-1].float().mean()
        return loss_g, loss_d.detach()

    def save(self, folder: Path) -> None:
        save_file({k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}, folder / WEIGHTS)
        save_state(self.optimizer.state_dict(), folder / OPTIMIZER)

    def load(self, folder: Path) -> bool:
        """The judge saved in `folder`; False (a fresh judge) when the checkpoint has none, as when an
        adversarial fine-tune starts from a plain run."""
        if not (folder / WEIGHTS).exists():
            return False
        self.net.load_state_dict(load_file(folder / WEIGHTS))
        self.optimizer.load_state_dict(load_state(folder / OPTIMIZER))
        return True
