"""CoSynPipeline: the one place that loops over the joint reverse process.

Gaussian part (image + distance): a diffusers scheduler, swappable by name.
Categorical part (label): multinomial diffusion following the same timetable through the
skip-step posterior q(x_s | x_t, x̂_0).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from cosyn import __version__
from cosyn.core.classes import ClassSet
from cosyn.core.instances import cut_instances
from cosyn.core.layout import Layout, LayoutError
from cosyn.core.maps import point_map
from cosyn.core.triple import Triple
from cosyn.data.targets import structure_prompt
from cosyn.io.fileio import atomic_dir, record_checksum
from cosyn.model.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    PipelineConfig,
    load_second_stage,
    read_pipeline_config,
    read_weights,
    stage_context,
    unusable_weights,
)
from cosyn.model.denoiser import JointDenoiser
from cosyn.model.diffusion.categorical import MultinomialDiffusion, index_to_log_onehot, log_onehot_to_index
from cosyn.model.diffusion.gaussian import (
    model_to_dist,
    model_to_image,
    predict_start_from_v,
    sampling_scheduler,
    training_scheduler,
)
from cosyn.model.known import HeldRegion, KnownRegion
from cosyn.model.settings import SamplingSettings
from cosyn.model.text import TextEncoder
from cosyn.stages.base import STAIN_PARAM, SecondStage
from cosyn.stages.registry import STAGE_DIR, default_stage
from cosyn.stages.texture.stain import Stain


class SamplingCancelled(RuntimeError):
    """Raised when an on_step callback returns False."""


class SamplingError(ValueError):
    """Sampling produced what cannot be an H&E tile (NaN, infinity, an all-black image): never a result."""


# The densest CoNSeP training patch holds 420 nuclei per 100 × 100 µm (the 99th percentile 409).
DENSEST_TRAINED = 420.0


def crowding_warnings(canvas: Layout) -> list[str]:
    """A warning when the layout packs nuclei beyond anything the model was trained on: expect merged
    or missing instances there, not an error."""
    density = canvas.density()
    if density is None or density <= DENSEST_TRAINED:
        return []
    return [f"{density:.0f} nuclei per 100×100 µm is beyond the densest training tile ({DENSEST_TRAINED:.0f}): "
            "expect merged or missing instances"]


@dataclass
class StepPreview:
    """What on_step receives: current x̂_0 estimates of the first sample in the batch."""

    step: int
    total: int
    image: np.ndarray
    class_map: np.ndarray
    dist: np.ndarray


class CoSynPipeline:
    def __init__(self, model: JointDenoiser, config: PipelineConfig, text_encoder: TextEncoder | None = None,
                 sha256: str = "", second_stage: SecondStage | None = None) -> None:
        # channels_last: 2.98 vs 3.77 s per 256² triple with bf16 on 2 CPU cores (benchmarks/sample_precision.py)
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.config = config
        self._text = text_encoder
        self.sha256 = sha256
        # what brings base triples to a finer µm/px; settable, so a benchmark can swap stages
        self.second_stage = second_stage or default_stage(stage_context(config))
        self.class_set = ClassSet(tuple(config.classes))
        self.categorical = MultinomialDiffusion(
            training_scheduler(config.schedule).alphas_cumprod, config.denoiser.num_classes
        )

    @property
    def text_encoder(self) -> TextEncoder:
        if self._text is None:
            self._text = TextEncoder(self.config.text_encoder)
        return self._text

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- persistence ------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str = "cpu", text_encoder: TextEncoder | None = None,
                        trust_unverified: bool = False) -> CoSynPipeline:
        """The checkpoint in `folder`. Its weights must match the sha256 recorded in its checksums.json; one
        without a recorded checksum loads only with `trust_unverified`."""
        folder = Path(folder)
        config = read_pipeline_config(folder)
        state, sha256 = read_weights(folder, config, trust_unverified)
        model = JointDenoiser(config.denoiser)
        model.load_state_dict({k: v.float() for k, v in state.items()})
        return cls(model.to(device), config, text_encoder, sha256=sha256,
                   second_stage=load_second_stage(folder, config, trust_unverified))

    def save_pretrained(self, folder: str | Path, dtype: torch.dtype = torch.float32,
                        extras: Callable[[Path], None] | None = None) -> None:
        """Write config + weights as `folder`, replacing it whole (a card or report of the weights it
        held would describe another model) and atomically; `extras(new_folder)` may add files, such
        as a model card, before the new folder takes the old one's place."""
        state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in self.model.state_dict().items()}
        bad = unusable_weights(state)
        if bad:  # e.g. weights past float16's range, which became inf in the conversion: refused before writing
            raise CheckpointError(f"{folder}: not saved: {bad} as {str(dtype).removeprefix('torch.')}")
        with atomic_dir(Path(folder)) as tmp:
            (tmp / STAGE_DIR).mkdir()
            self.config.second_stage = self.second_stage.save(tmp / STAGE_DIR)
            if not any((tmp / STAGE_DIR).iterdir()):
                (tmp / STAGE_DIR).rmdir()  # a stage without files (the Upsampler) leaves no folder
            (tmp / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=1))
            save_file(state, tmp / WEIGHTS_NAME, metadata={"format": "pt"})
            (tmp / WEIGHTS_NAME).chmod(0o644)
            record_checksum(tmp / WEIGHTS_NAME)
            if extras is not None:
                extras(tmp)

    # -- layouts --------------------------------------------------------------------------------------------
    def conform_layout(self, layout: Layout, size: tuple[int, int] | None = None) -> Layout:
        """The layout at the model's mpp, on a canvas that is a multiple of the UNet stride."""
        unknown = [c for c in layout.classes[1:] if c not in self.class_set.names]
        used = {p.cls.strip().lower() for p in layout.points}
        if unknown and used & set(unknown):
            raise LayoutError(
                f"layout uses classes {sorted(used & set(unknown))} that the model does not know; "
                f"model classes: {list(self.class_set.names[1:])}"
            )
        factor = 1.0 if layout.mpp is None else layout.mpp / self.config.mpp
        stride = self.config.denoiser.stride
        if size is None:
            size = (layout.width * factor, layout.height * factor)
        w, h = (max(stride, int(round(v / stride)) * stride) for v in size)
        limit = self.config.max_canvas
        if w > limit or h > limit:
            raise LayoutError(f"canvas {w}x{h} at the model's {self.config.mpp} µm/px exceeds the limit of {limit} px")
        scaled = layout.rescaled(w, h, self.config.mpp)
        return Layout(w, h, list(self.class_set.names), scaled.points, self.config.mpp, layout.tissue, layout.prompt)

    # -- sampling ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        layout: Layout,
        prompt: str | None = None,
        settings: SamplingSettings | None = None,
        *,
        size: tuple[int, int] | None = None,
        canvas: Layout | None = None,
        on_step: Callable[[StepPreview], bool | None] | None = None,
        preview_every: int = 1,
        bf16: bool = True,
        known: KnownRegion | None = None,
        stain: Stain | None = None,
        **fields: Any,
    ) -> list[Triple]:
        """Triples for `layout`, sampled as `settings` say; keyword `fields` (steps=, seed=, refine=, ...)
        replace single settings, validated the same way. The base model samples at its own µm/px; when
        the layout is finer (a 40x canvas for a 20x model) the second stage (`second_stage`, cosyn.stages)
        brings each triple to the layout's µm/px (`refine=False` skips it and returns the base triple).
        `known` holds part of the canvas fixed to a real triple (editing: cosyn.editing). `canvas` is
        `conform_layout(layout, size)` when the caller has it already (conformed once per request). `stain`:
        the triples come out in that stain (cosyn.stages.texture.stain) instead of their source slide's."""
        settings = settings or SamplingSettings()
        if fields:
            settings = settings.with_(**fields)
        if stain is not None:
            self.check_stain(layout, settings.refine)
        if prompt is not None and not isinstance(prompt, str):
            raise ValueError(f"prompt must be text, not {type(prompt).__name__}")
        canvas = canvas or self.conform_layout(layout, size)
        prompt = prompt or layout.prompt or structure_prompt(canvas)
        if known is not None and known.shape != (canvas.height, canvas.width):
            raise ValueError(f"the known region is {known.shape}, the canvas {(canvas.height, canvas.width)}")
        x_img, x_dist, labels = self._denoise(canvas, prompt, settings, on_step, preview_every, bf16, known)
        seed = settings.seed
        params = {
            "seed": seed, "steps": settings.steps, "guidance": settings.guidance, "sampler": settings.sampler,
            "prompt": prompt, "n": settings.n, "checkpoint_sha256": self.sha256, "cosyn_version": __version__,
            "model_mpp": self.config.mpp, "layout_mpp": layout.mpp, "stages": ["base"],
            "warnings": crowding_warnings(canvas),
        } | ({STAIN_PARAM: stain.to_dict()} if stain is not None else {})
        images = model_to_image(x_img)
        for i, image in enumerate(images):
            if not image.any():
                raise SamplingError(self._failure(f"sampled image {i + 1} of {len(images)} is entirely black",
                                                  settings.guidance))
        base = [self._to_triple(canvas, img, d, lab, {**params, "index": i})
                for i, (img, d, lab) in enumerate(zip(images, model_to_dist(x_dist), labels, strict=True))]
        if not (settings.refine and self.stage_runs(layout)):
            return base
        return [self._second_stage(t, layout.mpp, seed * 1009 + i) for i, t in enumerate(base)]

    def check_stain(self, layout: Layout, refine: bool = True) -> None:
        """Refuse a stain reference that sampling `layout` would not apply: only a second stage that takes one
        (the texture stage) applies it, and only when it runs."""
        if not (refine and self.stage_runs(layout) and getattr(self.second_stage, "takes_stain", False)):
            raise ValueError(f"a stain reference is applied by the texture stage, and the {self.second_stage.name} "
                             "stage does not take one here (it needs refine on and a layout finer than the model's "
                             f"{self.config.mpp} µm/px)")

    def output_mpp(self, layout: Layout, refine: bool = True) -> float:
        """The µm/px of the triples that sampling `layout` returns."""
        return layout.mpp if refine and self.stage_runs(layout) else self.config.mpp

    def stage_runs(self, layout: Layout) -> bool:
        """Whether the second stage brings the base triples to `layout`'s µm/px: when it is finer than the
        model's (a 40x canvas for a 20x model)."""
        return layout.mpp is not None and layout.mpp < self.config.mpp - 1e-9

    def _second_stage(self, base: Triple, mpp: float, seed: int) -> Triple:
        out = self.second_stage.to_mpp(base, mpp, seed)
        if self.second_stage.sha256:
            out.params["second_stage_sha256"] = self.second_stage.sha256
        return out

    def _denoise(self, canvas: Layout, prompt: str, settings: SamplingSettings, on_step: Callable | None,
                 preview_every: int, bf16: bool,
                 known: KnownRegion | None = None) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        device, k = self.device, self.config.denoiser.num_classes
        steps, guidance, seed, n = settings.steps, settings.guidance, settings.seed, settings.n
        h, w = canvas.height, canvas.width
        held = None if known is None else HeldRegion.of(known)
        gen = torch.Generator("cpu").manual_seed(int(seed))
        x_img = torch.randn((n, 3, h, w), generator=gen).to(device)
        x_dist = torch.randn((n, 1, h, w), generator=gen).to(device)
        log_label = index_to_log_onehot(torch.randint(0, k, (n, h, w), generator=gen), k).to(device)
        pts = torch.from_numpy(point_map(canvas.xy(), canvas.class_ids(), h, w).astype(np.int64))
        pts = pts.to(device)[None].expand(2 * n if guidance != 1 else n, h, w)
        text, mask = self._text_batch(prompt, n, with_uncond=guidance != 1)
        scheduler = sampling_scheduler(settings.sampler, self.config.schedule)
        if steps > scheduler.config.num_train_timesteps:
            raise ValueError(f"steps={steps}: this checkpoint's noise schedule has "
                             f"{scheduler.config.num_train_timesteps} timesteps; sample with at most that many")
        scheduler.set_timesteps(steps)
        timesteps = [int(t) for t in scheduler.timesteps]
        alphas = scheduler.alphas_cumprod
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
        for i, t in enumerate(timesteps):
            s = timesteps[i + 1] if i + 1 < len(timesteps) else -1
            reps = 2 if guidance != 1 else 1
            t_batch = torch.full((reps * n,), t, device=device, dtype=torch.long)
            with autocast:
                out = self.model(x_img.repeat(reps, 1, 1, 1), x_dist.repeat(reps, 1, 1, 1),
                                 log_label.exp().repeat(reps, 1, 1, 1), pts, t_batch, text, mask)
            v = torch.cat([out.v_image, out.v_dist], 1).float()
            logits = out.label_logits.float()
            if reps == 2:
                v = v[n:] + guidance * (v[:n] - v[n:])
                logits = logits[n:] + guidance * (logits[:n] - logits[n:])
            x = torch.cat([x_img, x_dist], 1)
            if on_step is not None and (i % preview_every == 0 or s == -1):
                x0 = predict_start_from_v(x, v, alphas[t].expand(n).to(device))
                preview = StepPreview(i + 1, len(timesteps), model_to_image(x0[:1, :3])[0],
                                      logits[0].argmax(0).byte().cpu().numpy(), model_to_dist(x0[:1, 3:])[0])
                if on_step(preview) is False:
                    raise SamplingCancelled(f"Cancelled at step {i + 1} of {len(timesteps)}")
            x = scheduler.step(v, t, x).prev_sample
            if not torch.isfinite(x).all():  # every later step would only carry the NaN on: stop at the first
                raise SamplingError(self._failure(f"the image or distance map became NaN or infinite at step "
                                                  f"{i + 1} of {len(timesteps)}", guidance))
            x_img, x_dist = x[:, :3], x[:, 3:]
            t_n = torch.full((n,), t, dtype=torch.long)
            # the categorical posterior runs on the CPU with the CPU generator `gen`, so a seed draws the
            # same labels on every device; only the label tensors make the round trip
            log_label = self.categorical.p_step(logits.cpu(), log_label.cpu(), t_n,
                                                torch.full((n,), s, dtype=torch.long), generator=gen).to(device)
            if held is not None:
                x_img, x_dist, log_label = held.impose(x_img, x_dist, log_label, s, alphas, self.categorical, gen)
        labels = log_onehot_to_index(log_label).byte().cpu().numpy()
        return x_img, x_dist, labels

    def _failure(self, what: str, guidance: float) -> str:
        """Why a sample is refused, with its likely causes (no healthy model makes these at a sane guidance)."""
        weights = f"sha256 {self.sha256[:12]}…" if self.sha256 else "not loaded from a file"
        return (f"{what}, which is never an H&E tile: the checkpoint's weights ({weights}) have likely diverged "
                f"or been damaged, or guidance {guidance:g} is too strong for this model; "
                "try a guidance near 2, or an earlier checkpoint")

    def _text_batch(self, prompt: str, n: int, with_uncond: bool) -> tuple[torch.Tensor, torch.Tensor]:
        prompts = [prompt] * n + ([""] * n if with_uncond else [])
        states, mask = self.text_encoder.encode(prompts)
        return states.to(self.device), mask.to(self.device)

    def _to_triple(self, canvas: Layout, image: np.ndarray, dist: np.ndarray, label: np.ndarray,
                   params: dict[str, Any]) -> Triple:
        result = cut_instances(dist, label, canvas.xy(), canvas.class_ids())
        params = {**params, "centroids": len(canvas.points), "missed_centroids": len(result.missed),
                  "missed_indices": [int(i) for i in result.missed]}
        return Triple(image, label, result.inst_map, dist.astype(np.float32), dict(result.inst_classes),
                      canvas, params)
