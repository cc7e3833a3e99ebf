"""What ``backbone.gan`` builds for the trainer: the :class:`Critic` (discriminator + LeCam EMAs) and the
perceptual loss, in one :class:`GAN` (:func:`build_gan`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from omegaconf import DictConfig
from torch import Tensor, nn

from futurelat.config.gan import GANConfig
from futurelat.models.gan.discriminator import build_discriminator
from futurelat.models.gan.losses import LeCam
from futurelat.models.gan.perceptual import PerceptualLoss, build_perceptual


class Critic(nn.Module):
    """The discriminator and the LeCam EMAs of its logits: everything the discriminator optimizer trains
    and a checkpoint stores for it (``state_dict``: ``discriminator.*``, ``lecam.ema_real``, ``lecam.ema_fake``).

    ``forward(frames (B, T, C, H, W) in [0, 1])`` → the discriminator's logits (any shape, batch first).
    """

    def __init__(self, discriminator: nn.Module, lecam_decay: float = 0.999):
        super().__init__()
        self.discriminator = discriminator
        self.lecam = LeCam(lecam_decay)

    def forward(self, frames: Tensor) -> Tensor:
        return self.discriminator(frames)


@dataclass
class GAN:
    """``backbone.gan`` built: its settings, the critic (``None`` when ``enabled`` is false: a
    perceptual loss alone) and the perceptual loss (``None`` when ``perceptual_weight`` is 0)."""

    config: GANConfig
    critic: Critic | None
    perceptual: PerceptualLoss | None


def build_gan(cfg: Mapping | DictConfig | GANConfig | None, in_channels: int) -> GAN | None:
    """``backbone.gan`` → :class:`GAN` for frames of ``in_channels`` channels, or ``None`` when it asks for
    nothing (``enabled: false`` and ``perceptual_weight: 0``): stage 1 is then the plain autoencoder step.

    The discriminator's initial weights are drawn from the global torch RNG (the run's seed).

    Raises:
        ValueError: a bad ``backbone.gan`` key or value (:meth:`GANConfig.from_cfg`).
        FileNotFoundError: perceptual weights that are missing and cannot be downloaded.
    """
    config = cfg if isinstance(cfg, GANConfig) else GANConfig.from_cfg(cfg)
    if not config.active:
        return None
    critic = None
    if config.enabled:
        critic = Critic(build_discriminator(config.discriminator, in_channels, config.channels, config.num_layers),
                        config.lecam_decay)
    perceptual = build_perceptual(config.perceptual) if config.perceptual_weight > 0 else None
    return GAN(config=config, critic=critic, perceptual=perceptual)
