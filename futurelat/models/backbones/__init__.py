"""Backbones (frames ↔ latents). Importing this package registers them."""

from futurelat.models.backbones.vjepa2 import VJEPA2Backbone  # noqa: F401
from futurelat.models.backbones.vqvae import VQVAE  # noqa: F401
