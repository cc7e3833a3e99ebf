"""Discriminators for adversarial backbone training: clips ``(B, T, C, H, W)`` in [0, 1] → patch logits.

- :class:`PatchDiscriminator2d` (``patch2d``): the PatchGAN of pix2pix (Isola et al. 2017) and VQGAN,
  on every frame alone: ``(B, T, C, H, W)`` → ``(B, T, h, w)``.
- :class:`StyleDiscriminator3d` (``style3d``): StyleGAN2-style residual blocks (Karras et al. 2020)
  with 3-D convolutions and blur-pool downsampling, as MAGVIT-v2's discriminator (Yu et al. 2024),
  which sees motion: ``(B, T, C, H, W)`` → ``(B, t, h, w)``.

Both use GroupNorm or no normalisation, never BatchNorm: a sample's logits depend on that sample
alone, so real and fake clips can share one forward pass, and there are no running statistics to
drift apart between DDP ranks or across a resume. Shape notation: B batch, T frames, C channels,
H×W pixels; t, h, w the downsampled logit grid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from futurelat.models.base import check_frames


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=min(32, channels // 2 or 1), num_channels=channels)


def _width(channels: int, stage: int) -> int:
    """Width of stage ``stage``: ``channels · 2**stage``, at most ``8 · channels`` (pix2pix's cap)."""
    return channels * min(2 ** stage, 8)


class PatchDiscriminator2d(nn.Module):
    """Per-frame PatchGAN: ``num_layers`` stride-2 4×4 convs (LeakyReLU 0.2; GroupNorm after the
    first), a 3×3 conv and a 3×3 conv to one logit per patch.

    ``(B, T, C, H, W)`` in [0, 1] → logits ``(B, T, H / 2**num_layers, W / 2**num_layers)``.
    """

    def __init__(self, in_channels: int = 3, channels: int = 64, num_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        for stage in range(1, num_layers):
            layers += [nn.Conv2d(_width(channels, stage - 1), _width(channels, stage), 4, stride=2, padding=1),
                       _norm(_width(channels, stage)), nn.LeakyReLU(0.2)]
        last = _width(channels, num_layers - 1)
        layers += [nn.Conv2d(last, _width(channels, num_layers), 3, padding=1), _norm(_width(channels, num_layers)),
                   nn.LeakyReLU(0.2), nn.Conv2d(_width(channels, num_layers), 1, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, frames: Tensor) -> Tensor:
        check_frames(frames)
        b = frames.shape[0]
        logits = self.net(rearrange(frames * 2 - 1, "b t c h w -> (b t) c h w"))  # (B·T, 1, h, w)
        return rearrange(logits, "(b t) 1 h w -> b t h w", b=b)


class BlurPool3d(nn.Module):
    """Anti-aliased downsampling by 2 (Zhang 2019): a depthwise [1, 2, 1]/4 blur, then stride 2, over
    H and W, and over time while there are at least two frames (replicate padding).

    ``(B, c, t, h, w)`` → ``(B, c, ceil(t / 2) or 1, ceil(h / 2), ceil(w / 2))``.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("taps", torch.tensor([1.0, 2.0, 1.0]) / 4, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        c, t = x.shape[1], x.shape[2]
        kt = self.taps if t > 1 else self.taps.new_ones(1)
        kernel = kt[:, None, None] * self.taps[None, :, None] * self.taps[None, None, :]  # (kt, 3, 3)
        kernel = kernel.to(x.dtype).expand(c, 1, *kernel.shape)
        pt = 1 if t > 1 else 0
        x = F.pad(x, (1, 1, 1, 1, pt, pt), mode="replicate")
        return F.conv3d(x, kernel, stride=(2 if t > 1 else 1, 2, 2), groups=c)


class StyleBlock3d(nn.Module):
    """StyleGAN2's residual discriminator block in 3-D: ``conv3 → lrelu → blur-pool → conv3 → lrelu``
    plus a ``blur-pool → 1×1 conv`` skip, summed and scaled by 1/√2. ``(B, c_in, t, h, w)`` →
    ``(B, c_out, t', h / 2, w / 2)`` (:class:`BlurPool3d`)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv3d(c_in, c_in, 3, padding=1)
        self.conv2 = nn.Conv3d(c_in, c_out, 3, padding=1)
        self.skip = nn.Conv3d(c_in, c_out, 1, bias=False)
        self.down = BlurPool3d()

    def forward(self, x: Tensor) -> Tensor:
        h = F.leaky_relu(self.conv1(x), 0.2)
        h = F.leaky_relu(self.conv2(self.down(h)), 0.2)
        return (h + self.skip(self.down(x))) / math.sqrt(2)


class StyleDiscriminator3d(nn.Module):
    """StyleGAN-style 3-D discriminator: a 3×3×3 stem, ``num_layers`` :class:`StyleBlock3d` (each
    halves H and W, and T while T > 1), a 3×3×3 conv and a 1×1×1 conv to one logit per patch.

    ``(B, T, C, H, W)`` in [0, 1] → logits ``(B, t, H / 2**num_layers, W / 2**num_layers)``.
    """

    def __init__(self, in_channels: int = 3, channels: int = 64, num_layers: int = 3):
        super().__init__()
        self.stem = nn.Conv3d(in_channels, channels, 3, padding=1)
        self.blocks = nn.Sequential(*(StyleBlock3d(_width(channels, i), _width(channels, i + 1))
                                      for i in range(num_layers)))
        last = _width(channels, num_layers)
        self.out = nn.Sequential(nn.Conv3d(last, last, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv3d(last, 1, 1))

    def forward(self, frames: Tensor) -> Tensor:
        check_frames(frames)
        x = F.leaky_relu(self.stem(rearrange(frames * 2 - 1, "b t c h w -> b c t h w")), 0.2)
        return self.out(self.blocks(x))[:, 0]  # (B, t, h, w)


DISCRIMINATORS = {"patch2d": PatchDiscriminator2d, "style3d": StyleDiscriminator3d}


def build_discriminator(kind: str, in_channels: int, channels: int = 64, num_layers: int = 3) -> nn.Module:
    """``patch2d`` | ``style3d`` (``backbone.gan.discriminator``) for ``in_channels``-channel frames.

    Raises:
        ValueError: an unknown ``kind``.
    """
    if kind not in DISCRIMINATORS:
        raise ValueError(f"unknown discriminator {kind!r}; valid: {' | '.join(DISCRIMINATORS)}")
    return DISCRIMINATORS[kind](in_channels=in_channels, channels=channels, num_layers=num_layers)
