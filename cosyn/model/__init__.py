"""The joint diffusion model: a layout and a prompt in, an image/label/instance triple out.

- denoiser: JointDenoiser, the UNet that predicts image and distance velocities and label logits
- points: the class-wise point heatmaps the denoiser is conditioned on
- diffusion: the Gaussian (image, distance) and categorical (label) noise processes
- text, text_cache: the prompt encoder and its precomputed cache
- pipeline: CoSynPipeline, the sampling loop and the checkpoint folder format
- settings: SamplingSettings, what one sampling call is asked to do, validated once
"""

from cosyn._lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "DenoiserConfig": "denoiser", "JointDenoiser": "denoiser",
    "point_heatmaps": "points",
    "TextEncoder": "text", "PromptCache": "text_cache",
    "CoSynPipeline": "pipeline", "PipelineConfig": "pipeline", "CheckpointError": "pipeline",
    "SamplingCancelled": "pipeline", "SamplingSettings": "settings",
})
