"""Heads (context latents → future latents): a trunk (:mod:`.trunks`) plus an objective (:mod:`.objectives`).

The heads named in configs are ``mamba`` (:mod:`.mamba`), ``transformer`` (:mod:`.transformer`) and
``flow_dit`` (:mod:`.flow_dit`); :mod:`.composed` joins a trunk and an objective into a head.
"""

# TEMPORARY, until the lazy registry (name -> "module:attr") replaces futurelat.registry's decorators:
# futurelat.registry imports this package so that the @HEADS.register lines in these modules run.
# Delete these three imports together with those decorator lines.
from futurelat.models.heads.flow_dit import FlowDiTHead  # noqa: F401
from futurelat.models.heads.mamba import MambaHead  # noqa: F401
from futurelat.models.heads.transformer import TransformerHead  # noqa: F401
