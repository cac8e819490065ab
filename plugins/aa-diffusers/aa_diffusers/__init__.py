"""Stable Diffusion (any diffusers text-to-image pipeline) and a CLIP image filter for Adapt Anything."""
