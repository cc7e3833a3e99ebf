"""MAGVIT-v2 video tokenizer (Yu et al. 2023, "Language Model Beats Diffusion", arXiv:2310.05737) with
finite scalar quantization (Mentzer et al. 2023, "Finite Scalar Quantization", arXiv:2309.15505).

A causal 3-D conv encoder (residual blocks, per-frame GroupNorm, blur-pool downsampling) → FSQ
(``vector_quantize_pytorch.FSQ``: each latent channel bounded and rounded to ``levels[i]`` values, no
codebook to learn, no commitment loss) → a causal 3-D conv decoder (depth-to-space upsampling). Causal
in time (:mod:`futurelat.models.backbones.magvit2_blocks`): the first frame is encoded alone, so one
tokenizer serves images (``T = 1``) and videos, and a clip's latents never depend on later frames.

Shape notation: B batch, T = 1 + s·k frames, C channels, H×W pixels; s = 2 ** sum(temporal_downsample)
(4 by default), f = 2 ** len(channel_mult) (8 by default); T' = 1 + (T - 1) / s latent frames (17 → 5),
h×w = (H/f)×(W/f) token grid, N = h·w, D = len(levels) latent channels, K = prod(levels) codes.
Latents are the quantized FSQ vectors (values ``(j - L//2) / (L//2)`` per channel, in [-1, 1]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from vector_quantize_pytorch import FSQ

from futurelat.config.backbone import MAGVIT2Params
from futurelat.models.backbones.magvit2_blocks import (BlurPool3d, CausalConv3d, DepthToSpaceUpsample,
                                                       FrameGroupNorm, ResBlock3d)
from futurelat.models.base import Backbone, Latents, LatentSpec, check_frames

# --------------------------------------------------------------------------------------
# Encoder and decoder
# --------------------------------------------------------------------------------------


class Encoder(nn.Module):
    """``(B, C, T, H, W)`` in [0, 1] → pre-quantization ``(B, D, T', H/f, W/f)``.

    Per stage: ``num_res_blocks`` residual blocks to width ``hidden · mult``, then a blur-pool that
    halves H, W (and T, causally, where ``temporal_downsample`` says so); then residual blocks at the
    lowest resolution and a 1×1×1 conv to ``D``.
    """

    def __init__(self, in_channels: int, widths: list[int], temporal: list[bool], num_res_blocks: int,
                 latent_dim: int):
        super().__init__()
        c = widths[0]
        layers: list[nn.Module] = [CausalConv3d(in_channels, c, 3)]
        for width, time in zip(widths, temporal):
            for _ in range(num_res_blocks):
                layers.append(ResBlock3d(c, width))
                c = width
            layers.append(BlurPool3d(c, temporal=time))
        layers += [ResBlock3d(c, c) for _ in range(num_res_blocks)]
        layers += [FrameGroupNorm(c), nn.SiLU(), CausalConv3d(c, latent_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """Quantized ``(B, D, T', h, w)`` → frames ``(B, C, T, h·f, w·f)`` in [0, 1] (sigmoid); mirrors
    :class:`Encoder` with depth-to-space upsampling (dropping the padded frame of each temporal one)."""

    def __init__(self, out_channels: int, widths: list[int], temporal: list[bool], num_res_blocks: int,
                 latent_dim: int):
        super().__init__()
        c = widths[-1]
        layers: list[nn.Module] = [CausalConv3d(latent_dim, c, 3)]
        layers += [ResBlock3d(c, c) for _ in range(num_res_blocks)]
        for width, time in reversed(list(zip(widths, temporal))):
            layers.append(DepthToSpaceUpsample(c, temporal=time))
            for _ in range(num_res_blocks):
                layers.append(ResBlock3d(c, width))
                c = width
        layers += [FrameGroupNorm(c), nn.SiLU()]
        self.net = nn.Sequential(*layers)
        self.conv_out = CausalConv3d(c, out_channels, 3)

    def forward(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.conv_out(self.net(z)))


@dataclass
class AutoencoderOutput:
    """One pass of :meth:`MAGVIT2.autoencode` (what a reconstruction or adversarial loss reads).

    Attributes:
        recon: ``(B, T, C, H, W)`` decoded frames in [0, 1] (sigmoid), with gradients.
        latents: ``(B, T', N, D)`` quantized latents (straight-through gradients to the encoder).
        codes: ``(B, T', N)`` int64 in ``[0, K)``.
    """

    recon: Tensor
    latents: Tensor
    codes: Tensor


# --------------------------------------------------------------------------------------
# The backbone
# --------------------------------------------------------------------------------------


#: The defaults of ``backbone.params`` (:class:`futurelat.config.backbone.MAGVIT2Params`), the constructor's
#: too: one source for configs and Python callers.
_DEFAULTS = MAGVIT2Params()


class MAGVIT2(Backbone):
    """Causal video tokenizer: frames ``(B, T, C, H, W)`` ↔ codes ``(B, T', N)`` / latents ``(B, T', N, D)``.

    Every default but ``in_channels`` is ``configs/backbone/magvit2_fsq.yaml``'s, from
    :class:`futurelat.config.backbone.MAGVIT2Params`.

    Args:
        in_channels: C, 1 or 3.
        hidden_channels: width of the first stage.
        channel_mult: width multiplier per stage; each stage halves H and W (``[1, 2, 4]``: 64×64 → 8×8).
        temporal_downsample: per stage, whether it halves time too (``[False, True, True]``: s = 4).
        num_res_blocks: residual blocks per stage and in the middle (encoder and decoder), >= 1.
        levels: FSQ levels per latent channel, each >= 3: D = ``len(levels)``, K = ``prod(levels)``.

    Raises:
        ValueError: a bad argument (the message names it).
    """

    def __init__(self, in_channels: int = 3, hidden_channels: int = _DEFAULTS.hidden_channels,
                 channel_mult: list[int] | tuple[int, ...] = tuple(_DEFAULTS.channel_mult),
                 temporal_downsample: list[bool] | tuple[bool, ...] = tuple(_DEFAULTS.temporal_downsample),
                 num_res_blocks: int = _DEFAULTS.num_res_blocks,
                 levels: list[int] | tuple[int, ...] = tuple(_DEFAULTS.levels)):
        super().__init__()
        channel_mult, temporal, levels = list(channel_mult), [bool(t) for t in temporal_downsample], list(levels)
        if in_channels not in (1, 3):
            raise ValueError(f"backbone.in_channels must be 1 or 3, got {in_channels}")
        if not channel_mult or len(temporal) != len(channel_mult):
            raise ValueError(f"backbone.params.temporal_downsample needs one entry per stage of channel_mult "
                             f"{channel_mult}; got {temporal_downsample}")
        if num_res_blocks < 1:
            raise ValueError(f"backbone.params.num_res_blocks must be >= 1, got {num_res_blocks}")
        if not levels or min(levels) < 3:
            raise ValueError(f"backbone.params.levels must be FSQ levels >= 3 each, got {levels}")
        widths = [hidden_channels * m for m in channel_mult]
        self.in_channels = in_channels
        self.downsample = 2 ** len(channel_mult)
        self.temporal_downsample = 2 ** sum(temporal)
        self.latent_dim = len(levels)
        self.codebook_size = math.prod(levels)
        self.encoder = Encoder(in_channels, widths, temporal, num_res_blocks, self.latent_dim)
        self.decoder = Decoder(in_channels, widths, temporal, num_res_blocks, self.latent_dim)
        self.quantizer = FSQ(levels=levels)  # dim = D: no projections, the latents are the FSQ vectors
        levels_t = torch.tensor(levels)
        self.register_buffer("levels", levels_t, persistent=False)  # (D,)
        self.register_buffer("basis", torch.cumprod(torch.tensor([1] + levels[:-1]), 0), persistent=False)  # (D,)
        self.register_buffer("codebook", self._code_vectors(torch.arange(self.codebook_size)), persistent=False)

    # ---------------------------------------------------------------- shapes

    def latent_spec(self, frame_size: tuple[int, int]) -> LatentSpec:
        """``LatentSpec(D, (H/f, W/f), K, s, first_frame_alone=True)``.

        Raises:
            ValueError: ``H`` or ``W`` is not a multiple of f.
        """
        height, width = frame_size
        if height % self.downsample or width % self.downsample:
            raise ValueError(f"magvit2_fsq downsamples by {self.downsample}; frame size {height}x{width} is not "
                             "divisible by it (change dataset.image_size or backbone.params.channel_mult)")
        return LatentSpec(latent_dim=self.latent_dim, grid=(height // self.downsample, width // self.downsample),
                          codebook_size=self.codebook_size, temporal_downsample=self.temporal_downsample,
                          first_frame_alone=True)

    def _check_input(self, frames: Tensor) -> None:
        check_frames(frames)
        b, t, c, h, w = frames.shape
        s = self.temporal_downsample
        if c != self.in_channels:
            raise ValueError(f"magvit2_fsq was built for {self.in_channels}-channel frames; got frames of shape "
                             f"{tuple(frames.shape)} (B, T, C, H, W)")
        if (t - 1) % s:
            raise ValueError(f"magvit2_fsq encodes the first frame alone, then groups of {s}: T must be 1 + k * {s} "
                             f"({', '.join(str(1 + k * s) for k in range(5))}, ...); got frames of shape "
                             f"{tuple(frames.shape)} (B, T, C, H, W) with T={t}")
        self.latent_spec((h, w))

    # ---------------------------------------------------------------- codes ↔ vectors

    def _code_vectors(self, codes: Tensor) -> Tensor:
        """Codes ``(...)`` → FSQ vectors ``(..., D)``: digit ``j_i`` of the mixed-radix code, as ``(j_i - L_i//2) / (L_i//2)``."""
        half = self.levels // 2
        digits = (codes[..., None] // self.basis) % self.levels
        return (digits - half) / half

    def embed_codes(self, codes: Tensor) -> Tensor:
        """Codes ``(..., N)`` int64 → latents ``(..., N, D)``."""
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size}); got range "
                             f"[{int(codes.min())}, {int(codes.max())}]")
        return F.embedding(codes, self.codebook)

    @torch.no_grad()
    def snap(self, latents: Tensor) -> Tensor:
        """Continuous latents ``(..., D)`` → int64 codes ``(...)`` of the nearest FSQ vectors (L2).

        The FSQ grid is a product of per-channel grids, so the nearest vector rounds each channel to its
        nearest level: no search, no ``K``-sized temporaries.
        """
        half = self.levels // 2
        digits = torch.minimum((latents.float() * half + half).round().clamp_min(0), self.levels - 1)
        return (digits.long() * self.basis).sum(-1)

    nearest_codes = snap  # the VQ-VAE's name for the same search

    # ---------------------------------------------------------------- encode / decode

    def _quantize(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Pre-quantization ``(B, T', N, D)`` → quantized latents ``(B, T', N, D)`` (straight-through) and
        codes ``(B, T', N)`` int64. Runs in float32 even under autocast."""
        b = z.shape[0]
        with torch.autocast(device_type=z.device.type, enabled=False):
            z_q, codes = self.quantizer(z.float().flatten(0, 1))  # (B·T', N, D), (B·T', N)
        return z_q.unflatten(0, (b, -1)), codes.long().unflatten(0, (b, -1))

    def _encode(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        self._check_input(frames)
        z = self.encoder(rearrange(frames, "b t c h w -> b c t h w"))
        return self._quantize(rearrange(z, "b d t h w -> b t (h w) d"))

    def encode(self, frames: Tensor) -> Latents:
        """Frames ``(B, T, C, H, W)`` in [0, 1], ``T = 1 + s·k`` → latents ``(B, T', N, D)`` and codes ``(B, T', N)``.

        Latent frame 0 encodes frame 0 alone; latent frame ``j >= 1`` frames ``s(j-1)+1 .. sj`` (and any before).

        Raises:
            ValueError: a bad shape: T not ``1 + s·k``, H or W not a multiple of f, another channel count.
        """
        z_q, codes = self._encode(frames)
        return Latents(latents=z_q, codes=codes)

    def decode(self, z: Latents) -> Tensor:
        """Latents → frames ``(B, 1 + s·(T' - 1), C, H, W)`` in [0, 1].

        Uses ``z.codes`` when present; otherwise continuous ``z.latents (B, T', N, D)`` are first snapped
        to the nearest FSQ vectors, so the decoder only sees inputs it was trained on.
        """
        codes = z.codes if z.codes is not None else self.snap(z.latents)
        return self._decode_vectors(self.embed_codes(codes))

    def decode_latents(self, latents: Tensor) -> Tensor:
        """Continuous latents ``(B, T', N, D)`` → frames ``(B, T, C, H, W)``, differentiable: the forward
        pass decodes the snapped FSQ vectors (as :meth:`decode`), the gradient goes straight through the snap.

        A causal decoder decodes latent frame 0 as an image: decode a clip's latents from its start.
        """
        snapped = self.embed_codes(self.snap(latents)).to(latents.dtype)
        return self._decode_vectors(latents + (snapped - latents).detach())

    def _decode_vectors(self, vectors: Tensor) -> Tensor:
        """Vectors ``(B, T', N, D)`` on a square ``N = h * w`` grid → frames ``(B, T, C, H, W)``."""
        n = vectors.shape[2]
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"magvit2_fsq decodes square token grids; got N={n} tokens per frame")
        frames = self.decoder(rearrange(vectors, "b t (h w) d -> b d t h w", h=side))
        return rearrange(frames, "b c t h w -> b t c h w")

    # ---------------------------------------------------------------- training

    def autoencode(self, frames: Tensor) -> AutoencoderOutput:
        """Encode, quantize and decode frames ``(B, T, C, H, W)``, with gradients (stage 1; a GAN stage adds
        its adversarial loss on ``recon`` to :meth:`reconstruction_losses`)."""
        z_q, codes = self._encode(frames)
        return AutoencoderOutput(recon=self._decode_vectors(z_q), latents=z_q, codes=codes)

    @property
    def last_layer(self) -> Tensor:
        """The decoder's last conv weight (VQGAN's adaptive adversarial weight compares gradients there)."""
        return self.decoder.conv_out.weight

    def reconstruction_losses(self, frames: Tensor, out: AutoencoderOutput) -> dict[str, Tensor]:
        """``loss`` (L1 reconstruction; FSQ has no commitment or codebook loss), ``recon_l1``, ``psnr`` (dB,
        on this batch), ``codebook_usage`` (fraction of the K codes used in this batch) and ``perplexity``
        (exp of the code-distribution entropy, at most K)."""
        recon_l1 = F.l1_loss(out.recon, frames)
        with torch.no_grad():
            mse = F.mse_loss(out.recon.float(), frames.float())
            counts = torch.bincount(out.codes.flatten(), minlength=self.codebook_size).float()
            probs = counts / counts.sum()
            entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum()
        return {
            "loss": recon_l1,
            "recon_l1": recon_l1.detach(),
            "psnr": 10 * torch.log10(1.0 / mse.clamp_min(1e-10)),
            "codebook_usage": (counts > 0).float().mean(),
            "perplexity": entropy.exp(),
        }

    def last_decoder_layer(self) -> Tensor:
        """:attr:`last_layer`, under the name the GAN step asks for (:meth:`Backbone.last_decoder_layer`)."""
        return self.last_layer

    def forward(self, frames: Tensor, return_reconstruction: bool = False) -> dict[str, Tensor]:
        """Stage-1 step on clips ``(B, T, C, H, W)``, ``T = 1 + s·k``: :meth:`reconstruction_losses` of
        :meth:`autoencode`; with ``return_reconstruction`` also ``reconstruction`` (its ``recon``), for the
        GAN step (``backbone.gan``, :meth:`Backbone.forward`)."""
        out = self.autoencode(frames)
        losses = self.reconstruction_losses(frames, out)
        if return_reconstruction:
            losses["reconstruction"] = out.recon
        return losses

    def sample_training_frames(self, frames: Tensor, frames_per_clip: int) -> Tensor:
        """A random window of consecutive frames of each clip: ``(B, T, C, H, W)`` → ``(B, k, C, H, W)``,
        ``k`` = ``min(frames_per_clip, T)`` rounded down to ``1 + s·j`` (20 → 17). Global torch RNG."""
        b, t = frames.shape[:2]
        s = self.temporal_downsample
        k = 1 + (min(int(frames_per_clip), t) - 1) // s * s
        if k < 1:
            raise ValueError(f"cannot sample {frames_per_clip} frames from clips of shape {tuple(frames.shape)}")
        start = torch.randint(0, t - k + 1, (b,)).to(frames.device)
        index = start[:, None] + torch.arange(k, device=frames.device)  # (B, k)
        return frames[torch.arange(b, device=frames.device)[:, None], index]
