"""Heads (context latents → future latents), one per module.

:data:`futurelat.registry.HEADS` maps config names (``head.name``) to them; this package imports nothing.
"""
