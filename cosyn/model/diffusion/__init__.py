"""Diffusion processes, kept apart from the model and the sampling loop.

The image and distance map use diffusers' Gaussian schedulers; the label map uses
`categorical.MultinomialDiffusion`, which shares their cumulative schedule ᾱ_t.
"""
