"""Backbones (frames ↔ latents), one per module; :data:`futurelat.registry.BACKBONES` maps config names to them."""
