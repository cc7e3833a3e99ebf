"""``flow_dit`` head: a diffusion transformer that samples future latents by rectified flow.

Shape notation: ``B`` batch, ``Tc`` context frames (``context_frames``), ``Tf`` future frames of a
training clip (``num_frames - context_frames``), ``N = h * w`` tokens per latent frame on the
``(h, w)`` grid, ``D`` latent channels, ``p`` patch size, ``M = (h / p) * (w / p)`` patches per
frame, ``d`` model width. Latents are ``(B, T, N, D)`` float.

Training (:meth:`FlowDiTHead.forward`): the clip's last ``Tf`` frames are the data ``x_1``; with
noise ``x_0 ~ N(0, I)`` and a time ``t``, the transformer regresses the velocity ``x_1 - x_0`` at
``x_t = (1 - t) x_0 + t x_1`` given ``t`` and the first ``Tc`` frames (rectified flow, see
:mod:`futurelat.models.heads.flow`). Prediction (:meth:`FlowDiTHead.rollout`) integrates that ODE
from fresh noise to ``t = 1``: the returned latents are the integrated *samples*, never velocities.

The network is a DiT (Peebles & Xie 2023, "Scalable Diffusion Models with Transformers",
arXiv:2212.09748) over space-time patches:

- the noisy future ``(B, Tf, N, D)`` is cut into ``p x p`` patches → ``Tf * M`` tokens of
  ``p * p * D`` → linear → ``d``. Each token's (frame, row, column) coordinates enter either as
  fixed factorized sin-cos embeddings added to it (``position="sincos"``, as in DiT) or as
  factorized 3-D rotary embeddings of every attention's queries and keys (``"rope"``, Su et al.
  2021, as in video DiTs such as CogVideoX; scores then depend on relative offsets, which makes
  "look at the same place in the last frame" easy to learn). Both are computed, so no table
  caps the length;
- the flow time enters every block by adaLN-Zero: ``sin-cos(1000 t) → MLP → c``, and each block
  regresses a shift, scale and gate per residual branch from ``c`` with a zero-initialised linear,
  so every block starts as the identity; the final layer (adaLN shift/scale + linear to
  ``p * p * D``) is zero-initialised too, so a fresh head predicts velocity 0;
- the context ``(B, Tc, N, D)`` is patchified the same way with its own input projection and
  either joins the sequence (``conditioning="in_context"``: one bidirectional sequence of
  ``(Tc + Tf) * M`` tokens, context tokens marked by a learned type embedding, output read from the
  future tokens) or is cross-attended by every block (``"cross_attention"``: self-attention over
  the ``Tf * M`` future tokens, then attention to the ``Tc * M`` context tokens).

The network's output is the velocity (``prediction="velocity"``) or, with ``prediction="data"``,
the data estimate ``x̂_1`` from which the velocity of the straight path through ``x_t`` follows
(x-prediction, Li & He 2025, arXiv:2511.13720; see :class:`FlowDiTHead`).

Classifier-free guidance (Ho & Salimans 2022): in training each sample's context is replaced, with
probability ``context_dropout``, by a learned null token (at every context position, positions
kept), which teaches the unconditional velocity used by ``guidance_scale != 1``.

Latent standardization: a VQ backbone's latents (its codebook vectors) have an arbitrary scale,
while the noise is ``N(0, I)``. The first batch :meth:`~FlowDiTHead.forward` sees in training mode
sets a per-channel mean and std (:class:`~futurelat.models.heads.latent_io.LatentStandardizer`,
buffers ``standardizer.*`` in the ``state_dict``). Context and targets are standardized with
them, samples are un-standardized. With ``target="residual"`` the flow generates the change of
each future frame from the last context frame instead (standardized with its own statistics),
and the samples are added back to that frame.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from futurelat.models.base import Head, LatentSpec, Latents
from futurelat.models.heads.attention import MLP, apply_rope, rotary
from futurelat.models.heads.checkpointing import CheckpointableBlocks
from futurelat.models.heads.flow import (TIME_SAMPLINGS, SamplerOptions, guided_velocity, integrate, linear_path,
                                         sample_times, sampler_options)
from futurelat.models.heads.patches import check_patch_size, patchify, unpatchify
from futurelat.models.heads.standardize import TARGETS, LatentStandardizer
from futurelat.registry import HEADS

CONDITIONINGS = ("in_context", "cross_attention")
#: Where token positions enter: ``sincos`` added to the input tokens, or ``rope`` rotating queries and keys.
DIT_POSITIONS = ("sincos", "rope")
#: What the network outputs: the velocity itself, or the data ``x_1`` (x-prediction, turned into a velocity).
PREDICTIONS = ("velocity", "data")
#: x-prediction divides by ``1 - t``; clamped below at this gap (Li & He 2025 clip the same way).
DATA_PREDICTION_MIN_GAP = 0.05
#: Rotary ``(cos, sin)`` angles of a token sequence, each ``(L, e/2)``.
Rotation = tuple[Tensor, Tensor]
#: Width of the sinusoidal features of the flow time (before the time MLP), as in DiT.
TIME_FEATURES = 256


# ---------------------------------------------------------------------------------------------
# Embeddings
# ---------------------------------------------------------------------------------------------


def sincos(pos: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Fixed sinusoidal features of real positions ``pos`` ``(...)`` → ``(..., dim)`` float32.

    ``[sin(pos * f_i), cos(pos * f_i)]`` for ``f_i = max_period ** (-i / (dim // 2))``; an odd
    ``dim`` ends with a zero column.
    """
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=pos.device, dtype=torch.float32) * (-math.log(max_period) / half))
    angles = pos.float()[..., None] * freqs
    return F.pad(torch.cat([angles.sin(), angles.cos()], dim=-1), (0, dim % 2))


def spacetime_positions(frames: range, grid: tuple[int, int], dim: int, device: torch.device) -> Tensor:
    """Factorized sin-cos embedding of the tokens of ``frames`` x ``grid`` → ``(len(frames) * h * w, dim)``.

    Tokens are in (frame, row, column) raster order; ``dim`` is split into a frame, a row and a
    column part (``2 * (dim // 6)`` each for row and column, the rest for the frame).
    """
    h, w = grid
    axes = torch.cartesian_prod(torch.arange(frames.start, frames.stop, device=device),
                                torch.arange(h, device=device), torch.arange(w, device=device))  # (L, 3)
    space = 2 * (dim // 6)
    return torch.cat([sincos(axes[:, 0], dim - 2 * space), sincos(axes[:, 1], space), sincos(axes[:, 2], space)], -1)


class TimestepEmbedder(nn.Module):
    """Flow times ``t`` ``(B,)`` in [0, 1] → ``(B, d)``: ``sincos(1000 t)`` → Linear → SiLU → Linear."""

    def __init__(self, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(TIME_FEATURES, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(sincos(1000 * t, TIME_FEATURES).to(self.mlp[0].weight.dtype))


# ---------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: ``x`` ``(B, L, d)`` with per-sample ``shift``, ``scale`` ``(B, d)`` → ``x (1 + scale) + shift``."""
    return x * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    """Bidirectional multi-head attention (``scaled_dot_product_attention``).

    Self-attention ``x`` ``(B, L, d)`` → ``(B, L, d)`` (one fused q/k/v projection), or with
    ``cross=True`` attention from ``x`` to ``y`` ``(B, S, d)`` → ``(B, L, d)``.
    """

    def __init__(self, dim: int, heads: int, dropout: float, cross: bool = False):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        if cross:
            self.q, self.kv = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim)
        else:
            self.qkv = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, y: Tensor | None = None, rope_q: Rotation | None = None,
                rope_k: Rotation | None = None) -> Tensor:
        """``rope_q`` / ``rope_k``: ``(cos, sin)`` ``(L, e/2)`` / ``(S, e/2)`` rotary angles of the
        queries / keys (:func:`~futurelat.models.heads.attention.apply_rope`), or None."""
        if y is None:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
        else:
            q, (k, v) = self.q(x), self.kv(y).chunk(2, dim=-1)
        q, k, v = (rearrange(a, "b l (n e) -> b n l e", n=self.heads) for a in (q, k, v))
        if rope_q is not None:
            q = apply_rope(q, *rope_q)
        if rope_k is not None:
            k = apply_rope(k, *rope_k)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(rearrange(out, "b n l e -> b l (n e)"))


class DiTBlock(nn.Module):
    """adaLN-Zero transformer block: ``x`` ``(B, L, d)``, time embedding ``c`` ``(B, d)`` (and, with
    ``cross=True``, context tokens ``(B, S, d)``) → ``(B, L, d)``.

    Every residual branch (self-attention, [cross-attention], MLP) is
    ``x + gate * branch(LayerNorm(x) * (1 + scale) + shift)`` with ``(shift, scale, gate)`` regressed
    from ``c`` by ``self.ada``, whose last linear is zero-initialised: the block starts as identity.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float, cross: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads, dropout)
        self.norm_cross = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6) if cross else None
        self.cross_attn = Attention(dim, heads, dropout, cross=True) if cross else None
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(dim, mlp_ratio, dropout)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, (9 if cross else 6) * dim))

    def forward(self, x: Tensor, c: Tensor, context: Tensor | None = None, rope: Rotation | None = None,
                context_rope: Rotation | None = None) -> Tensor:
        """``rope`` / ``context_rope``: rotary angles of ``x`` / ``context`` tokens (position ``"rope"``), or None."""
        mods = self.ada(c).chunk(9 if self.cross_attn is not None else 6, dim=-1)  # each (B, d)
        shift, scale, gate = mods[0:3]
        x = x + gate[:, None] * self.attn(modulate(self.norm1(x), shift, scale), rope_q=rope, rope_k=rope)
        if self.cross_attn is not None:
            shift, scale, gate = mods[6:9]
            x = x + gate[:, None] * self.cross_attn(modulate(self.norm_cross(x), shift, scale), context,
                                                    rope_q=rope, rope_k=context_rope)
        shift, scale, gate = mods[3:6]
        return x + gate[:, None] * self.mlp(modulate(self.norm2(x), shift, scale))


class FinalLayer(nn.Module):
    """``(B, L, d)``, ``c`` ``(B, d)`` → ``(B, L, out)``: adaLN (shift, scale) then a linear; both
    zero-initialised, so the head's first velocity is 0."""

    def __init__(self, dim: int, out: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, out)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.ada(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


# ---------------------------------------------------------------------------------------------
# The head
# ---------------------------------------------------------------------------------------------


def _check_config(spec: LatentSpec, num_frames: int, context_frames: int, d_model: int, num_layers: int,
                  num_heads: int, mlp_ratio: float, patch_size: int, conditioning: str, context_dropout: float,
                  time_sampling: str, dropout: float, position: str, options: SamplerOptions) -> None:
    """Raise ``ValueError`` naming ``head.params.<key>`` for the first bad setting."""
    check_patch_size(patch_size, spec.grid)
    problems = [  # (is it bad, key, value, rule)
        (not 1 <= context_frames < num_frames, "context_frames", context_frames,
         f"must lie in [1, num_frames - 1 = {num_frames - 1}] (num_frames={num_frames} latent frames per clip)"),
        (conditioning not in CONDITIONINGS, "conditioning", conditioning, f"must be one of {CONDITIONINGS}"),
        (time_sampling not in TIME_SAMPLINGS, "time_sampling", time_sampling, f"must be one of {TIME_SAMPLINGS}"),
        (num_layers < 1, "num_layers", num_layers, "must be >= 1"),
        (d_model < 6, "d_model", d_model, "must be >= 6 (sin-cos positions of 3 axes)"),
        (num_heads < 1 or d_model % num_heads, "num_heads", num_heads, f"must be >= 1 and divide d_model={d_model}"),
        (position not in DIT_POSITIONS, "position", position, f"must be one of {DIT_POSITIONS}"),
        (position == "rope" and num_heads >= 1 and (d_model // num_heads < 6 or d_model // num_heads % 2),
         "position", position, f"needs an even head width d_model / num_heads >= 6 (a rotation pair per axis); "
         f"got {d_model}/{num_heads}"),
        (not mlp_ratio > 0, "mlp_ratio", mlp_ratio, "must be > 0"),
        (not 0 <= context_dropout < 1, "context_dropout", context_dropout, "must lie in [0, 1)"),
        (not 0 <= dropout < 1, "dropout", dropout, "must lie in [0, 1)"),
        (options.guidance_scale != 1 and context_dropout == 0, "context_dropout", context_dropout,
         f"must be > 0 for head.sampling.guidance_scale={options.guidance_scale} != 1 "
         "(the unconditional velocity is learned only from dropped contexts)"),
    ]
    for bad, key, value, rule in problems:
        if bad:
            raise ValueError(f"head.params.{key}={value!r} {rule}")


@HEADS.register("flow_dit")
class FlowDiTHead(Head):
    """Rectified-flow DiT over continuous latents ``(B, T, N, D)``; see the module docstring.

    Works on the latents of any backbone (``needs_codes = False``). On a discrete backbone its
    continuous samples are snapped to the nearest codebook entries by the backbone's ``decode``.

    Args:
        spec: the backbone's :class:`LatentSpec` (``latent_dim`` ``D``, ``grid`` ``(h, w)``).
        num_frames: latent frames per training clip (``Tc + Tf``).
        context_frames: ``Tc``, the leading frames of a clip used as context (``1 <= Tc < num_frames``).
        d_model: ``d`` (>= 6, divisible by ``num_heads``). num_layers: DiT blocks.
        num_heads: attention heads. mlp_ratio: MLP hidden width in multiples of ``d``.
        patch_size: ``p``, side of the square patches of the latent grid; must divide ``h`` and ``w``.
        conditioning: ``"in_context"`` or ``"cross_attention"``.
        context_dropout: training probability in [0, 1) of replacing a sample's context with the
            null token (needed > 0 for classifier-free guidance).
        time_sampling: training time distribution, ``"uniform"`` or ``"logit_normal"``.
        sampling: ``{"solver": "euler" | "heun", "steps": int >= 1, "guidance_scale": float >= 0,
            "noise_scale": float >= 0}`` for :meth:`rollout`, kept in ``self.sampling`` (defaults:
            heun, 10, 1.0 = no guidance, 1.0 = the learned distribution; see
            :func:`~futurelat.models.heads.flow.sampler_options`).
        dropout: attention-probability and MLP-hidden dropout in [0, 1) (training only).
        position: ``"sincos"`` (added to the tokens) or ``"rope"`` (3-D rotary; needs an even head
            width ``d / num_heads >= 6``); see the module docstring.
        prediction: what the network outputs: ``"velocity"`` (DiT / rectified flow), or ``"data"``,
            the estimate ``x̂_1`` (x-prediction; Li & He 2025, "Back to Basics: Let Denoising
            Generative Models Denoise", arXiv:2511.13720), turned into the velocity
            ``(x̂_1 - x_t) / max(1 - t, 0.05)``, trained with the x-loss ``|x̂_1 - x_1|^2`` (the
            velocity MSE weighted by ``max(1 - t, 0.05)^2``: unweighted, the few times near 1 dominate
            with uniform time sampling, and a toy clip was fitted 800x worse). With ``"data"`` the
            network never has to reproduce the noise in its output, and a fresh head (output 0)
            samples the standardizer's mean (with ``target="residual"``: the last context frame
            plus the mean change). Heun sampling then ends with an Euler step (the velocity is
            undefined at ``t = 1``).
        target: what the flow generates: ``"absolute"``, the standardized future latents, or
            ``"residual"``, their change from the last context frame (standardized again with its
            own per-channel statistics, fitted on the first training batch like the latents'). On
            video whose latents mostly persist from frame to frame (static background, V-JEPA 2
            features) the residual is near zero almost everywhere and the flow only has to model
            what moves.

    Raises:
        ValueError: a bad setting; the message names ``head.params.<key>`` (or ``head.sampling.<key>``).
    """

    needs_codes = False

    def __init__(self, spec: LatentSpec, num_frames: int, *, context_frames: int = 10, d_model: int = 128,
                 num_layers: int = 4, num_heads: int = 4, mlp_ratio: float = 4.0, patch_size: int = 2,
                 conditioning: str = "in_context", context_dropout: float = 0.1, time_sampling: str = "uniform",
                 sampling: Mapping[str, Any] | None = None, dropout: float = 0.0, target: str = "absolute",
                 position: str = "sincos", prediction: str = "velocity"):
        super().__init__()
        options = sampler_options(sampling)
        if target not in TARGETS:
            raise ValueError(f"head.params.target must be one of {', '.join(TARGETS)}; got {target!r}")
        if prediction not in PREDICTIONS:
            raise ValueError(f"head.params.prediction must be one of {', '.join(PREDICTIONS)}; got {prediction!r}")
        _check_config(spec, num_frames, context_frames, d_model, num_layers, num_heads, mlp_ratio, patch_size,
                      conditioning, context_dropout, time_sampling, dropout, position, options)
        self.spec, self.num_frames, self.context_frames = spec, num_frames, context_frames
        self.position, self.head_dim, self.prediction = position, d_model // num_heads, prediction
        self.future_frames = num_frames - context_frames
        self.conditioning, self.context_dropout, self.time_sampling = conditioning, context_dropout, time_sampling
        self.sampling: dict[str, Any] = dict(sampling) if sampling is not None else {}
        self.patch_size = patch_size
        self.patch_grid = (spec.grid[0] // patch_size, spec.grid[1] // patch_size)
        token_dim, cross = patch_size * patch_size * spec.latent_dim, conditioning == "cross_attention"

        self.time_embed = TimestepEmbedder(d_model)
        self.future_in = nn.Linear(token_dim, d_model)
        self.context_in = nn.Linear(token_dim, d_model)
        self.null_context = nn.Parameter(torch.zeros(d_model))
        self.context_type = None if cross else nn.Parameter(torch.zeros(d_model))
        self.context_norm = nn.LayerNorm(d_model) if cross else None
        self.blocks = CheckpointableBlocks(DiTBlock(d_model, num_heads, mlp_ratio, dropout, cross) for _ in range(num_layers))
        self.final = FinalLayer(d_model, token_dim)
        self.standardizer = LatentStandardizer(spec.latent_dim)
        self.target = target
        if target == "residual":
            self.residual_standardizer = LatentStandardizer(spec.latent_dim)
        self._init_weights(num_layers)

    def _init_weights(self, num_layers: int) -> None:
        """GPT-2-style N(0, 0.02) linears and embeddings, residual outputs scaled by 1/sqrt(2 L), except:

        - the input projections and the time MLP are Xavier-uniform (DiT's patch embedding): patch
          contents start on the scale of the sin-cos positions, and the time embedding ``c`` is
          O(1), so the zeroed adaLN linears below get usable gradients (with N(0, 0.02) here the
          toy overfitting test ends its 250 steps at a ~1.5x higher loss);
        - adaLN-Zero: every modulation linear and the output linear are zeroed.
        """
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        for linear in (self.future_in, self.context_in, *self.time_embed.mlp[::2]):
            nn.init.xavier_uniform_(linear.weight)
        for p in (self.null_context, self.context_type):
            if p is not None:
                nn.init.normal_(p, std=0.02)
        for name, p in self.named_parameters():
            if name.endswith(("out_proj.weight", "fc2.weight")):
                with torch.no_grad():
                    p.mul_(1 / math.sqrt(2 * num_layers))
        for linear in [block.ada[-1] for block in self.blocks] + [self.final.ada[-1], self.final.linear]:
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)

    # -- shapes and standardization -----------------------------------------------------------

    def _check_latents(self, latents: Tensor, name: str, frames: int, exact: bool) -> Tensor:
        """``latents`` as the buffers' dtype if float ``(B, T, N, D)`` with ``T == frames`` (``exact``)
        or ``T >= frames``; else ``ValueError`` naming the expected and the actual shape."""
        n, d = self.spec.tokens_per_frame, self.spec.latent_dim
        shape = tuple(latents.shape)
        if (len(shape) != 4 or not latents.is_floating_point() or shape[2:] != (n, d)
                or (shape[1] != frames if exact else shape[1] < frames)):
            need = f"T == {frames}" if exact else f"T >= {frames}"
            raise ValueError(f"flow_dit head: {name} must be a float tensor (B, T, N={n}, D={d}) with {need}; "
                             f"got dtype={latents.dtype}, shape={shape}")
        return latents.to(self.standardizer.mean.dtype)

    def patchify(self, x: Tensor) -> Tensor:
        """``(B, T, N, D)`` → ``(B, T * M, p * p * D)`` tokens in (frame, patch row, patch column) order."""
        return patchify(x, self.spec.grid, self.patch_size).flatten(1, 2)

    def unpatchify(self, tokens: Tensor) -> Tensor:
        """Inverse of :meth:`patchify`: ``(B, T * M, p * p * D)`` → ``(B, T, N, D)``."""
        m = self.patch_grid[0] * self.patch_grid[1]
        return unpatchify(tokens.unflatten(1, (-1, m)), self.spec.grid, self.patch_size)

    def _positions(self, first: int, frames: int, device: torch.device) -> Tensor:
        """Sin-cos embedding ``(frames * M, d)`` of frames ``first .. first + frames - 1``."""
        return spacetime_positions(range(first, first + frames), self.patch_grid, self.null_context.shape[0], device)

    def _rotation(self, first: int, frames: int, device: torch.device) -> Rotation:
        """Rotary ``(cos, sin)``, each ``(frames * M, e/2)``, of the tokens of frames ``first .. first + frames - 1``."""
        m = self.patch_grid[0] * self.patch_grid[1]
        return rotary(first * m, frames * m, self.patch_grid, self.head_dim, device)

    # -- the network --------------------------------------------------------------------------

    def velocity(self, x_t: Tensor, t: Tensor, context: Tensor, uncond: Tensor) -> Tensor:
        """The predicted velocity ``dx_t/dt`` (standardized units).

        Args:
            x_t: ``(B, Tf', N, D)`` standardized noisy future latents (any ``Tf' >= 1``).
            t: ``(B,)`` flow times in [0, 1].
            context: ``(B, Tc', N, D)`` standardized context latents (frames ``0 .. Tc' - 1``; the
                future frames are numbered from ``Tc'``).
            uncond: ``(B,)`` bool; True replaces that sample's context by the null token.

        Returns:
            ``(B, Tf', N, D)``.
        """
        tc, tf, device = context.shape[1], x_t.shape[1], x_t.device
        c = self.time_embed(t)  # (B, d)
        ctx = self.context_in(self.patchify(context))  # (B, Tc' * M, d)
        ctx = torch.where(uncond[:, None, None], self.null_context, ctx)
        x = self.future_in(self.patchify(x_t))  # (B, Tf' * M, d)
        if self.position == "sincos":
            ctx, x = ctx + self._positions(0, tc, device), x + self._positions(tc, tf, device)
        rope = self.position == "rope"
        if self.conditioning == "in_context":  # one sequence (context, future)
            seq = torch.cat([ctx + self.context_type, x], dim=1)
            seq_rope = self._rotation(0, tc + tf, device) if rope else None
            for block in self.blocks:
                seq = self.blocks.run(block, seq, c, rope=seq_rope)
            x = seq[:, ctx.shape[1]:]
        else:
            ctx = self.context_norm(ctx)
            ctx_rope, x_rope = (self._rotation(0, tc, device), self._rotation(tc, tf, device)) if rope else (None, None)
            for block in self.blocks:
                x = self.blocks.run(block, x, c, ctx, rope=x_rope, context_rope=ctx_rope)
        out = self.unpatchify(self.final(x, c))
        if self.prediction == "velocity":
            return out
        # x-prediction: the network outputs the data estimate; velocity of the linear path through it.
        return (out - x_t) / (1 - t).clamp_min(DATA_PREDICTION_MIN_GAP).view(-1, 1, 1, 1)

    # -- training -----------------------------------------------------------------------------

    def forward(self, z: Latents) -> dict[str, Tensor]:
        """Flow-matching loss on a clip ``z.latents`` ``(B, num_frames, N, D)``.

        The first call in training mode sets the standardization statistics from this batch.
        Context dropout applies in training mode only.

        Returns:
            ``loss``: MSE between predicted and target velocity ``x_1 - x_0`` (standardized units,
            mean over all elements; ~2 for a zero prediction); with ``prediction="data"`` the x-loss,
            MSE between ``x̂_1`` and ``x_1`` (~1 for a zero prediction). ``x1_mse``: MSE of the one-step data
            estimate ``x_t + (1 - t) v`` against ``x_1`` (a diagnostic in [0, inf), not optimized).

        Raises:
            ValueError: ``z.latents`` is not float ``(B, num_frames, N, D)``.
        """
        latents = self._check_latents(z.latents, "z.latents", self.num_frames, exact=True)
        self.standardizer.fit_once(latents)
        x = self.standardizer(latents)
        context, x1 = x[:, :self.context_frames], self._to_target(x[:, :self.context_frames], x[:, self.context_frames:])
        bsz = x.shape[0]
        path = linear_path(torch.randn_like(x1), x1, sample_times(bsz, self.time_sampling, device=x.device))
        uncond = torch.rand(bsz, device=x.device) < (self.context_dropout if self.training else 0.0)
        v = self.velocity(path.x_t, path.t, context, uncond)
        if self.prediction == "data":  # x-loss: the data estimate against x_1
            gap = (1 - path.t).clamp_min(DATA_PREDICTION_MIN_GAP).view(-1, 1, 1, 1)
            loss = F.mse_loss((gap * v).float(), (gap * path.velocity).float())
        else:
            loss = F.mse_loss(v.float(), path.velocity.float())
        with torch.no_grad():
            remaining = (1 - path.t).view(-1, 1, 1, 1)
            x1_mse = (remaining * (v.float() - path.velocity.float())).square().mean()
        return {"loss": loss, "x1_mse": x1_mse}

    def _to_target(self, context: Tensor, future: Tensor) -> Tensor:
        """Standardized future ``(B, Tf, N, D)`` → what the flow generates (see ``target``)."""
        if self.target == "absolute":
            return future
        delta = future - context[:, -1:]
        self.residual_standardizer.fit_once(delta)
        return self.residual_standardizer(delta)

    def _from_target(self, context: Tensor, x1: Tensor) -> Tensor:
        """Inverse of :meth:`_to_target`: generated ``(B, Tf, N, D)`` → standardized future latents."""
        if self.target == "absolute":
            return x1
        return context[:, -1:] + self.residual_standardizer.inverse(x1)

    # -- sampling -----------------------------------------------------------------------------

    def _sample_block(self, context: Tensor, options: SamplerOptions, generator: torch.Generator | None) -> Tensor:
        """Standardized context ``(B, Tc, N, D)`` → ``Tf`` integrated future frames ``(B, Tf, N, D)`` (standardized)."""
        bsz = context.shape[0]
        noise = options.noise_scale * torch.randn((bsz, self.future_frames, *context.shape[2:]), generator=generator,
                                                  device=context.device, dtype=context.dtype)

        def velocity(x: Tensor, t: Tensor, uncond: Tensor) -> Tensor:  # x may be the doubled CFG batch
            return self.velocity(x, t, context.repeat(x.shape[0] // bsz, 1, 1, 1), uncond)

        x1 = integrate(guided_velocity(velocity, options.guidance_scale), noise, solver=options.solver,
                       steps=options.steps, euler_last=self.prediction == "data")
        return self._from_target(context, x1)

    @torch.no_grad()
    def rollout(self, context: Latents, num_future: int, *, generator: torch.Generator | None = None) -> Latents:
        """Sample ``num_future`` latent frames after ``context.latents`` ``(B, Tc', N, D)``, ``Tc' >= Tc``.

        The last ``Tc`` context frames condition an ODE integration from noise (drawn with
        ``generator``, or torch's global RNG) with ``self.sampling``'s solver, steps and guidance
        scale. Beyond the trained horizon ``Tf`` it rolls out in blocks of ``Tf`` frames, each
        conditioned on the last ``Tc`` frames so far (context and samples); the last block is
        sampled whole and cut, so every block matches the training layout. Runs in eval mode and
        restores the previous mode.

        Returns:
            :class:`Latents` with ``latents`` ``(B, num_future, N, D)`` float (un-standardized
            integrated samples) and ``codes=None``.

        Raises:
            ValueError: a bad context shape, ``num_future < 1``, or bad ``self.sampling``.
        """
        options = sampler_options(self.sampling)
        latents = self._check_latents(context.latents, "context.latents", self.context_frames, exact=False)
        if num_future < 1:
            raise ValueError(f"flow_dit head: num_future must be >= 1; got {num_future}")
        was_training = self.training
        self.eval()
        try:
            window, blocks = self.standardizer(latents[:, -self.context_frames:]), []
            for _ in range(math.ceil(num_future / self.future_frames)):
                blocks.append(self._sample_block(window, options, generator))
                window = torch.cat([window, blocks[-1]], dim=1)[:, -self.context_frames:]
        finally:
            self.train(was_training)
        future = torch.cat(blocks, dim=1)[:, :num_future]
        return Latents(latents=self.standardizer.inverse(future), codes=None)
