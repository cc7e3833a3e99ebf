"""Backbones (frames ↔ latents), one per module.

:data:`futurelat.registry.BACKBONES` maps config names (``backbone.name``) to them; this package imports nothing.
"""
