"""Heads (context latents → future latents). Importing this package registers them."""

from futurelat.models.heads.mamba import MambaHead  # noqa: F401
