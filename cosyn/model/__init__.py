"""The joint diffusion model: a layout and a prompt in, an image/label/instance triple out.

- denoiser: JointDenoiser, the UNet that predicts image and distance velocities and label logits
- points: the class-wise point heatmaps the denoiser is conditioned on
- diffusion: the Gaussian (image, distance) and categorical (label) noise processes
- text, text_cache: the prompt encoder and its precomputed cache
- pipeline: CoSynPipeline, the sampling loop and the checkpoint folder format
- settings: SamplingSettings, what one sampling call is asked to do, validated once (sampling_args: its
  command-line options)
- known: KnownRegion, the part of a canvas an edit holds fixed while sampling

Import from the modules.
"""
