"""Backbones (frames ↔ latents). Importing this package registers them."""

from futurelat.models.backbones.vqvae import VQVAE  # noqa: F401
