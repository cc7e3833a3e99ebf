"""Schema of ``backbone.gan``: adversarial (and perceptual) training of a backbone with a pixel decoder.

Every backbone option has the node (:class:`futurelat.config.backbone.BackboneConfig`); it is off by
default, and with it off (and ``perceptual_weight: 0``) stage 1 is the plain autoencoder step. It is
not part of ``backbone.params``: a backbone trained with a GAN is the same model (same checkpoints,
same config match). How the trainer runs it: :mod:`futurelat.training.gan_step`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig

from futurelat.config.check import merge_schema

#: Valid ``backbone.gan.discriminator`` values (:mod:`futurelat.models.gan.discriminator`).
DISCRIMINATORS = ("patch2d", "style3d")
#: Valid ``backbone.gan.d_loss`` / ``g_loss`` values (:mod:`futurelat.models.gan.losses`).
GAN_LOSSES = ("hinge", "non_saturating")


@dataclass
class DiscriminatorOptim:
    """``backbone.gan.optimizer``: the discriminator's AdamW and schedule (the generator keeps
    ``trainer.backbone``'s). ``lr`` (> 0): peak learning rate; ``betas``, ``weight_decay`` (>= 0):
    AdamW's; ``warmup_steps`` (>= 0): linear warmup from the discriminator's first step
    (``start_step``), then cosine decay to ``lr * min_lr_ratio`` (in [0, 1]) at the stage's
    ``max_steps``. Gradients are clipped at ``trainer.grad_clip`` as the generator's."""

    lr: float = 1.0e-4
    betas: List[float] = field(default_factory=lambda: [0.5, 0.9])
    weight_decay: float = 0.0
    warmup_steps: int = 0
    min_lr_ratio: float = 1.0


@dataclass
class PerceptualConfig:
    """``backbone.gan.perceptual``: the frozen image network of the perceptual loss
    (:class:`futurelat.models.gan.perceptual.PerceptualLoss`), used when ``perceptual_weight > 0``.

    ``pretrained``: a Hugging Face hub id or a ``save_pretrained`` directory, read from the local
    cache (downloaded only when online; offline, a missing model is a clear error); null = random
    weights from ``model_type`` and ``config`` (tests). ``model_type``: a transformers model type
    with hidden states (``convnext``, ``resnet``, ``dinov2``, ...), for random weights. ``config``:
    overrides of that model's config. ``layers``: indices into the model's ``hidden_states`` compared
    (null = all). ``resize``: frames are resized to this square size first (null = as they are).
    ``cache_dir``: the hub cache (null = ``$HF_HOME/hub``). ``init_seed``: random weights' seed.
    """

    pretrained: Optional[str] = "facebook/convnext-tiny-224"
    model_type: str = "convnext"
    config: Optional[Dict[str, Any]] = None
    layers: Optional[List[int]] = None
    resize: Optional[int] = None
    cache_dir: Optional[str] = None
    init_seed: int = 0


@dataclass
class GANConfig:
    """``backbone.gan``: a discriminator against the backbone's reconstructions (VQGAN, Esser et al.
    2021; MAGVIT-v2, Yu et al. 2024), and an optional perceptual loss.

    ``enabled``: train a discriminator and add its adversarial loss to the generator's (the
    backbone's ``loss``). ``discriminator``: ``patch2d`` (per-frame PatchGAN) | ``style3d``
    (StyleGAN-style 3-D residual conv net with blur-pool downsampling); ``channels`` (>= 1) its first
    width, ``num_layers`` (>= 1) its downsampling stages. ``d_loss`` / ``g_loss``: ``hinge`` |
    ``non_saturating`` for the discriminator / the generator (default: hinge D, non-saturating G, as
    Open-MAGVIT2). ``start_step`` (>= 0): the optimizer step from which the discriminator trains and
    the generator sees the adversarial term (before it: neither; a step-0 discriminator with an
    adaptive weight is the reported collapse, so start late when ``adaptive_weight`` is on).
    ``generator_weight`` (>= 0): the adversarial term's weight (Open-MAGVIT2: 0.1); with
    ``adaptive_weight`` it multiplies VQGAN's adaptive ratio ``|grad rec| / |grad adv|`` at the decoder's
    last layer, clamped to ``[0, adaptive_weight_max]``. ``lecam_weight`` (>= 0): LeCam regulariser
    (Tseng et al. 2021) on the discriminator, with EMAs of its logits (decay ``lecam_decay`` in [0, 1)).
    ``perceptual_weight`` (>= 0): LPIPS-style feature distance on ``perceptual``'s network, added to
    the generator's loss (0 = off; it runs without the discriminator too). ``optimizer``: the
    discriminator's :class:`DiscriminatorOptim`.
    """

    enabled: bool = False
    discriminator: str = "patch2d"
    channels: int = 64
    num_layers: int = 3
    d_loss: str = "hinge"
    g_loss: str = "non_saturating"
    start_step: int = 0
    generator_weight: float = 0.1
    adaptive_weight: bool = False
    adaptive_weight_max: float = 1.0e4
    lecam_weight: float = 0.05
    lecam_decay: float = 0.999
    perceptual_weight: float = 0.0
    perceptual: PerceptualConfig = field(default_factory=PerceptualConfig)
    optimizer: DiscriminatorOptim = field(default_factory=DiscriminatorOptim)

    @property
    def active(self) -> bool:
        """Whether stage 1 needs the GAN step at all (a discriminator or a perceptual loss)."""
        return self.enabled or self.perceptual_weight > 0

    @classmethod
    def from_cfg(cls, cfg: Mapping | DictConfig | None) -> "GANConfig":
        """``backbone.gan`` (a config or a partial dict; missing keys take the defaults above).

        Raises:
            ValueError: an unknown key, a wrong type or a value out of range (``backbone.gan.<key>``).
        """
        s = merge_schema(cls, cfg, "backbone.gan")
        for key, valid in (("discriminator", DISCRIMINATORS), ("d_loss", GAN_LOSSES), ("g_loss", GAN_LOSSES)):
            if getattr(s, key) not in valid:
                raise ValueError(f"backbone.gan.{key} must be one of {' | '.join(valid)}; got {getattr(s, key)!r}")
        for key in ("channels", "num_layers"):
            if getattr(s, key) < 1:
                raise ValueError(f"backbone.gan.{key} must be >= 1; got {getattr(s, key)}")
        for key in ("start_step", "generator_weight", "lecam_weight", "perceptual_weight", "adaptive_weight_max"):
            if not getattr(s, key) >= 0:
                raise ValueError(f"backbone.gan.{key} must be >= 0; got {getattr(s, key)}")
        if not 0.0 <= s.lecam_decay < 1.0:
            raise ValueError(f"backbone.gan.lecam_decay must be in [0, 1); got {s.lecam_decay}")
        o = s.optimizer
        if not o.lr > 0 or o.weight_decay < 0 or o.warmup_steps < 0 or not 0.0 <= o.min_lr_ratio <= 1.0:
            raise ValueError(f"backbone.gan.optimizer: need lr > 0, weight_decay >= 0, warmup_steps >= 0 and "
                             f"min_lr_ratio in [0, 1]; got {o}")
        return s
