"""Heads (context latents → future latents). Importing this package registers them."""

from futurelat.models.heads.flow_dit import FlowDiTHead  # noqa: F401
from futurelat.models.heads.mamba import MambaHead  # noqa: F401
from futurelat.models.heads.transformer import TransformerHead  # noqa: F401
