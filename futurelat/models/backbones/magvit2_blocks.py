"""The causal 3-D blocks of the MAGVIT-v2 tokenizer (:mod:`futurelat.models.backbones.magvit2`).

Shape notation: B batch, c channels, t frames, h×w pixels; every tensor here is ``(B, c, t, h, w)``.

Causal in time: an output frame depends only on input frames at or before it. Convolutions pad
``k_t - 1`` copies of the first frame on the past side only (none on the future side), normalisation is
per frame, and a temporal stride keeps frames ``0, 2, 4, ...``, so ``1 + 2m`` frames become ``1 + m`` and
the first frame is always encoded alone (an image is a one-frame video).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


def _pad_past(x: Tensor, frames: int) -> Tensor:
    """``frames`` copies of the first frame before it: ``(B, c, t, h, w) → (B, c, t + frames, h, w)``."""
    return x if frames == 0 else torch.cat([x[:, :, :1].expand(-1, -1, frames, -1, -1), x], dim=2)


class CausalConv3d(nn.Conv3d):
    """``nn.Conv3d`` with a ``(k, k, k)`` kernel (or ``(k_t, k_h, k_w)``), stride 1, causal in time and
    "same" in space: ``(B, c_in, t, h, w) → (B, c_out, t, h, w)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int, int] = 3):
        kt, kh, kw = (kernel_size,) * 3 if isinstance(kernel_size, int) else kernel_size
        super().__init__(in_channels, out_channels, (kt, kh, kw), padding=(0, kh // 2, kw // 2))

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(_pad_past(x, self.kernel_size[0] - 1))


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm over each frame on its own (statistics over ``c/g × h × w``, never across time, which
    would leak future frames into the past): ``(B, c, t, h, w) → (B, c, t, h, w)``."""

    def __init__(self, channels: int):
        super().__init__(num_groups=math.gcd(32, channels), num_channels=channels)

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        y = super().forward(rearrange(x, "b c t h w -> (b t) c h w"))
        return rearrange(y, "(b t) c h w -> b c t h w", b=b)


class ResBlock3d(nn.Module):
    """Pre-norm residual block of two causal 3×3×3 convs: ``(B, c_in, t, h, w) → (B, c_out, t, h, w)``
    (a 1×1×1 conv on the skip path when ``c_in != c_out``)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.block = nn.Sequential(
            FrameGroupNorm(in_channels), nn.SiLU(), CausalConv3d(in_channels, out_channels, 3),
            FrameGroupNorm(out_channels), nn.SiLU(), CausalConv3d(out_channels, out_channels, 3),
        )
        self.skip = nn.Identity() if in_channels == out_channels else CausalConv3d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.block(x)


class BlurPool3d(nn.Module):
    """Anti-aliased downsampling (Zhang 2019, "Making Convolutional Networks Shift-Invariant Again"):
    a fixed binomial ``[1, 2, 1] / 4`` blur per channel, then stride 2.

    ``(B, c, t, h, w) → (B, c, t', h/2, w/2)``; with ``temporal=True`` the blur is causal in time too
    (frames ``i-2, i-1, i``) and ``t' = 1 + (t - 1) // 2`` (frames ``0, 2, 4, ...``), else ``t' = t``.
    Borders are padded by replication (an image blurs to itself in time).
    """

    def __init__(self, channels: int, temporal: bool):
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0]) / 4
        kernel = taps[:, None] * taps[None, :]  # (3, 3)
        kernel = taps[:, None, None] * kernel if temporal else kernel[None]  # (k_t, 3, 3)
        self.register_buffer("kernel", kernel.expand(channels, 1, *kernel.shape).contiguous(), persistent=False)
        self.temporal = temporal

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, (1, 1, 1, 1, 2 if self.temporal else 0, 0), mode="replicate")
        stride = (2 if self.temporal else 1, 2, 2)
        return F.conv3d(x, self.kernel.to(x.dtype), stride=stride, groups=x.shape[1])


class DepthToSpaceUpsample(nn.Module):
    """Learned upsampling by depth-to-space: a causal 3×3×3 conv to ``c · s_t · 2 · 2`` channels, whose
    channel blocks become the 2×2 pixels (and ``s_t`` frames) of each position.

    ``(B, c, t, h, w) → (B, c, t', 2h, 2w)``; with ``temporal=True``, ``s_t = 2`` and the first frame is
    dropped, ``t' = 2t - 1``: the inverse of :class:`BlurPool3d`'s ``1 + 2m → 1 + m`` (the first latent
    frame decodes to one frame). Initialised as nearest-neighbour upsampling of a conv ("ICNR", Aitken et
    al. 2017): every sub-pixel starts with the same weights, so there is no checkerboard at the start.
    """

    def __init__(self, channels: int, temporal: bool):
        super().__init__()
        self.st = 2 if temporal else 1
        self.conv = CausalConv3d(channels, channels * self.st * 4, 3)
        with torch.no_grad():
            base = CausalConv3d(channels, channels, 3)
            self.conv.weight.copy_(base.weight.repeat_interleave(self.st * 4, dim=0))
            self.conv.bias.copy_(base.bias.repeat_interleave(self.st * 4, dim=0))

    def forward(self, x: Tensor) -> Tensor:
        x = rearrange(self.conv(x), "b (c st sh sw) t h w -> b c (t st) (h sh) (w sw)", st=self.st, sh=2, sw=2)
        return x[:, :, self.st - 1:]
