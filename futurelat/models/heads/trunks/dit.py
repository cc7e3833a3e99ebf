"""DiT trunk: a diffusion transformer over space-time patches, conditioned on a flow time and context.

Shape notation: ``B`` batch, ``Tc`` context frames, ``Tf`` frames to generate, ``N = h * w`` tokens
per latent frame, ``D`` latent channels, ``p`` patch size, ``M = (h / p) * (w / p)`` patches per
frame, ``d`` width. Latents are ``(B, T, N, D)`` float.

DiT (Peebles & Xie 2023, "Scalable Diffusion Models with Transformers", arXiv:2212.09748):

- the noisy future ``(B, Tf, N, D)`` is cut into ``p x p`` patches → ``Tf * M`` tokens of
  ``p * p * D`` → linear → ``d``. Each token's (frame, row, column) coordinates enter either as
  fixed factorized sin-cos embeddings added to it (``position="sincos"``, as in DiT) or as
  factorized 3-D rotary embeddings of every attention's queries and keys (``"rope"``, Su et al.
  2021, as in video DiTs such as CogVideoX; scores then depend on relative offsets), both from
  :mod:`futurelat.models.heads.positions`. Both are computed, so no table caps the length;
- the flow time enters every block by adaLN-Zero: ``sin-cos(1000 t) → MLP → c``, and each block
  regresses a shift, scale and gate per residual branch from ``c`` with a zero-initialised linear,
  so every block starts as the identity; the final layer (adaLN shift/scale + linear to
  ``p * p * D``) is zero-initialised too, so a fresh trunk outputs 0;
- the context ``(B, Tc, N, D)`` is patchified the same way with its own input projection and
  either joins the sequence (``conditioning="in_context"``: one bidirectional sequence of
  ``(Tc + Tf) * M`` tokens, context tokens marked by a learned type embedding, output read from the
  future tokens) or is cross-attended by every block (``"cross_attention"``: self-attention over
  the ``Tf * M`` future tokens, then attention to the ``Tc * M`` context tokens);
- a sample whose ``uncond`` flag is set sees a learned null token at every context position
  (positions kept): classifier-free guidance (Ho & Salimans 2022).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from futurelat.models.heads.attention import MLP, Attention
from futurelat.models.heads.checkpointing import CheckpointableBlocks
from futurelat.models.heads.patches import patchify, unpatchify
from futurelat.models.heads.positions import grid_coords, sincos

CONDITIONINGS = ("in_context", "cross_attention")
#: Where token positions enter: ``sincos`` added to the input tokens, or ``rope`` rotating queries and keys.
DIT_POSITIONS = ("sincos", "rope")
#: Width of the sinusoidal features of the flow time (before the time MLP), as in DiT.
TIME_FEATURES = 256


# ---------------------------------------------------------------------------------------------
# Embeddings
# ---------------------------------------------------------------------------------------------


class TimestepEmbedder(nn.Module):
    """Flow times ``t`` ``(B,)`` in [0, 1] → ``(B, d)``: ``sincos(1000 t)`` → Linear → SiLU → Linear.

    The sin-cos features are DiT's: one axis, :data:`TIME_FEATURES` wide, ``"exp"`` ladder
    (:func:`~futurelat.models.heads.positions.sincos`).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(TIME_FEATURES, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        features = sincos((1000 * t)[:, None], TIME_FEATURES, layout="per_axis", ladder="exp")  # (B, TIME_FEATURES)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


# ---------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: ``x`` ``(B, L, d)`` with per-sample ``shift``, ``scale`` ``(B, d)`` → ``x (1 + scale) + shift``."""
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """adaLN-Zero transformer block: ``x`` ``(B, L, d)``, time embedding ``c`` ``(B, d)`` (and, with
    ``cross=True``, context tokens ``(B, S, d)``) → ``(B, L, d)``.

    Every residual branch (self-attention, [cross-attention], MLP) is
    ``x + gate * branch(LayerNorm(x) * (1 + scale) + shift)`` with ``(shift, scale, gate)`` regressed
    from ``c`` by ``self.ada``, whose last linear is zero-initialised: the block starts as identity.
    The attentions are bidirectional :class:`~futurelat.models.heads.attention.Attention` layers
    over tokens in (frame, patch row, patch column) order on the ``grid`` of patches; ``position``
    ``"rope"`` rotates their queries and keys by those coordinates.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float, cross: bool, *, position: str,
                 grid: tuple[int, int]):
        super().__init__()
        attention = dict(position=position, mask="none", grid=grid, dropout=dropout, cpu_math_max_keys=0)
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads, **attention)
        self.norm_cross = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6) if cross else None
        self.cross_attn = Attention(dim, heads, cross=True, **attention) if cross else None
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(dim, mlp_ratio, dropout)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, (9 if cross else 6) * dim))

    def forward(self, x: Tensor, c: Tensor, context: Tensor | None = None) -> Tensor:
        """``x`` ``(B, L, d)``: the tokens from index 0 (in-context), or with ``context`` ``(B, S, d)``
        (cross-attention) the tokens at ``S ..`` after the context's ``0 .. S - 1``."""
        mods = self.ada(c).chunk(9 if self.cross_attn is not None else 6, dim=-1)  # each (B, d)
        first = context.shape[1] if context is not None else 0
        shift, scale, gate = mods[0:3]
        x = x + gate[:, None] * self.attn(modulate(self.norm1(x), shift, scale), start=first)
        if self.cross_attn is not None:
            shift, scale, gate = mods[6:9]
            x = x + gate[:, None] * self.cross_attn(modulate(self.norm_cross(x), shift, scale), context=context)
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
# The trunk
# ---------------------------------------------------------------------------------------------


class DiTTrunk(nn.Module):
    """``net(x_t, t, context, uncond)``: noisy future latents → the network output, same shape.

    Args (keyword-only; the head validates them, naming ``head.params.<key>``):
        latent_dim: ``D``. grid: ``(h, w)`` latent tokens per frame. patch_size: ``p``, divides the grid.
        d_model: ``d`` (>= 6, divisible by ``num_heads``). num_layers: DiT blocks.
        num_heads: attention heads. mlp_ratio: MLP hidden width in multiples of ``d``.
        conditioning: ``"in_context"`` or ``"cross_attention"``.
        dropout: attention-probability and MLP-hidden dropout in [0, 1) (training only).
        position: ``"sincos"`` or ``"rope"`` (needs an even head width ``d / num_heads >= 6``).
    """

    def __init__(self, *, latent_dim: int, grid: tuple[int, int], patch_size: int, d_model: int, num_layers: int,
                 num_heads: int, mlp_ratio: float, conditioning: str, dropout: float, position: str):
        super().__init__()
        self.grid, self.patch_size, self.conditioning = tuple(grid), patch_size, conditioning
        self.position = position
        self.patch_grid = (grid[0] // patch_size, grid[1] // patch_size)
        token_dim, cross = patch_size * patch_size * latent_dim, conditioning == "cross_attention"

        self.time_embed = TimestepEmbedder(d_model)
        self.future_in = nn.Linear(token_dim, d_model)
        self.context_in = nn.Linear(token_dim, d_model)
        self.null_context = nn.Parameter(torch.zeros(d_model))
        self.context_type = None if cross else nn.Parameter(torch.zeros(d_model))
        self.context_norm = nn.LayerNorm(d_model) if cross else None
        self.blocks = CheckpointableBlocks(DiTBlock(d_model, num_heads, mlp_ratio, dropout, cross, position=position,
                                                    grid=self.patch_grid) for _ in range(num_layers))
        self.final = FinalLayer(d_model, token_dim)
        self._init_weights(num_layers)

    def _init_weights(self, num_layers: int) -> None:
        """GPT-2-style N(0, 0.02) linears and embeddings, residual outputs scaled by 1/sqrt(2 L), except:

        - the input projections and the time MLP are Xavier-uniform (DiT's patch embedding): patch
          contents start on the scale of the sin-cos positions, and the time embedding ``c`` is
          O(1), so the zeroed adaLN linears below get usable gradients (N(0, 0.02) here learns slower);
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

    def patchify(self, x: Tensor) -> Tensor:
        """``(B, T, N, D)`` → ``(B, T * M, p * p * D)`` tokens in (frame, patch row, patch column) order."""
        return patchify(x, self.grid, self.patch_size).flatten(1, 2)

    def unpatchify(self, tokens: Tensor) -> Tensor:
        """Inverse of :meth:`patchify`: ``(B, T * M, p * p * D)`` → ``(B, T, N, D)``."""
        m = self.patch_grid[0] * self.patch_grid[1]
        return unpatchify(tokens.unflatten(1, (-1, m)), self.grid, self.patch_size)

    def _positions(self, first: int, frames: int, device: torch.device) -> Tensor:
        """DiT's sin-cos embedding ``(frames * M, d)`` float32 of frames ``first .. first + frames - 1``:
        each of (frame, patch row, patch column) in turn, ``"exp"`` ladder
        (:func:`~futurelat.models.heads.positions.sincos`)."""
        m = self.patch_grid[0] * self.patch_grid[1]
        coords = grid_coords(first * m, frames * m, self.patch_grid, device)  # (frames * M, 3)
        return sincos(coords, self.null_context.shape[0], layout="per_axis", ladder="exp")

    def forward(self, x_t: Tensor, t: Tensor, context: Tensor, uncond: Tensor) -> Tensor:
        """The network output for noisy future latents (the objective reads it as a velocity or a data estimate).

        Args:
            x_t: ``(B, Tf', N, D)`` noisy future latents (any ``Tf' >= 1``).
            t: ``(B,)`` flow times in [0, 1].
            context: ``(B, Tc', N, D)`` context latents (frames ``0 .. Tc' - 1``; the
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
        if self.conditioning == "in_context":  # one sequence (context, future)
            seq = torch.cat([ctx + self.context_type, x], dim=1)
            for block in self.blocks:
                seq = self.blocks.run(block, seq, c)
            x = seq[:, ctx.shape[1]:]
        else:
            ctx = self.context_norm(ctx)
            for block in self.blocks:
                x = self.blocks.run(block, x, c, ctx)
        return self.unpatchify(self.final(x, c))
