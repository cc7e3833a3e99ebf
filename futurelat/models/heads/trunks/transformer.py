"""Transformer trunk: pre-norm attention blocks over raster-ordered tokens, with a KV cache for rollouts.

Shape notation: ``B`` batch, ``L`` tokens in a call, ``S`` tokens already cached, ``d`` width,
``(h', w')`` the token grid of a frame (:attr:`TransformerTrunk.grid`), ``M = h' w'`` tokens per
frame. Token ``i`` sits at frame ``i // M``, row ``(i % M) // w'``, column ``i % w'``.

The attention, masks and the KV cache are in :mod:`futurelat.models.heads.attention`, the position
encodings (``alibi``, ``rope``, ``sincos``) in :mod:`futurelat.models.heads.positions`. The mask
decides what the trunk fits (:attr:`TransformerTrunk.causal`): ``"none"`` (bidirectional: every
token sees every token), ``"block"`` (block-causal over frames: a frame's tokens see their frame
and every earlier one) or ``"causal"`` (token by token, raster order). Optional depthwise convolutions over each frame's
token grid (and over frames) run before every block: CPVT's conditional positional encoding (Chu et
al. 2021, arXiv:2102.10882), extended over time as SimVP's stacked convolutions (Gao et al. 2022,
arXiv:2206.05099), optionally factorized as R(2+1)D (Tran et al. 2018, arXiv:1711.11248).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from futurelat.models.heads.attention import (Block, FactorizedBlock, KVCache, TemporalDepthwiseConv,
                                              channels_last_weight, conv_over_clip, conv_over_grid)
from futurelat.models.heads.checkpointing import CheckpointableBlocks
from futurelat.models.heads.positions import grid_coords, sincos

#: What each mask lets a trunk model: see :attr:`TransformerTrunk.causal`.
CAUSALITY = {"none": "none", "block": "frame", "causal": "token"}


class TransformerTrunk(nn.Module):
    """Transformer blocks: tokens ``(B, L, d)`` → features ``(B, L, d)`` (final LayerNorm applied).

    Args (keyword-only; the head validates them, naming ``head.params.<key>``):
        d_model: ``d``. num_layers: blocks. num_heads: attention heads, divide ``d``.
        mlp_ratio: MLP hidden width in multiples of ``d``.
        dropout: on attention weights, MLP hidden units and residual branches (training only).
        position: ``"alibi" | "rope" | "sincos"``; sincos is added to the input tokens.
        mask: ``"none" | "block" | "causal"`` (see the module docstring).
        attention: ``"full"`` or ``"factorized"`` (space then time attention,
            :class:`~futurelat.models.heads.attention.FactorizedBlock`; mask ``"none"`` only).
        grid: ``(h', w')`` tokens per frame.
        query_chunk: queries per attention call when a mask or ALiBi bias is needed.
        spatial_kernel: ``0`` (off) or an odd ``k``: ``x + DWConv_k(x)`` over each frame's grid before
            every block (zero at init).
        temporal_kernel: ``1`` or an odd ``k_t`` (with ``spatial_kernel > 0``): that conv spans ``k_t`` frames.
        conv_factorization: ``"joint"`` (one ``k_t x k x k`` conv) or ``"2+1d"`` (``k x k`` per frame,
            then a ``k_t`` conv per token across frames).
        backend: ``"auto" | "sdpa" | "flex"``: the kernel of masked / ALiBi attention over a whole
            sequence (:mod:`futurelat.models.heads.flex`).

    Blocks are initialized GPT-2 style (linears ``N(0, 0.02)``, zero biases, residual projections
    scaled by ``1 / sqrt(2 L)``); the convs start at zero, so a fresh trunk is the plain transformer.
    """

    def __init__(self, *, d_model: int, num_layers: int, num_heads: int, mlp_ratio: float, dropout: float,
                 position: str, mask: str, attention: str, grid: tuple[int, int], query_chunk: int,
                 spatial_kernel: int, temporal_kernel: int, conv_factorization: str, backend: str = "auto"):
        super().__init__()
        self.width, self.position, self.grid = d_model, position, tuple(grid)
        self.frame_tokens = grid[0] * grid[1]  # M
        self.causal = CAUSALITY[mask]
        if attention == "factorized":
            self.blocks = CheckpointableBlocks(
                FactorizedBlock(d_model, num_heads, mlp_ratio, dropout, grid=self.grid, position=position)
                for _ in range(num_layers))
        else:
            self.blocks = CheckpointableBlocks(
                Block(d_model, num_heads, mlp_ratio, dropout, position=position, mask=mask, grid=self.grid,
                      query_chunk=query_chunk, backend=backend) for _ in range(num_layers))
        joint = temporal_kernel > 1 and conv_factorization == "joint"
        self.spatial_mixers = nn.ModuleList(
            channels_last_weight(
                nn.Conv3d(d_model, d_model, (temporal_kernel, spatial_kernel, spatial_kernel),
                          padding=(temporal_kernel // 2, spatial_kernel // 2, spatial_kernel // 2), groups=d_model)
                if joint else
                nn.Conv2d(d_model, d_model, spatial_kernel, padding=spatial_kernel // 2, groups=d_model))
            for _ in range(num_layers if spatial_kernel else 0))
        self.temporal_mixers = nn.ModuleList(  # the (2+1)D factorization's temporal half
            TemporalDepthwiseConv(d_model, temporal_kernel)
            for _ in range(num_layers if spatial_kernel and temporal_kernel > 1 and not joint else 0))
        self.norm_out = nn.LayerNorm(d_model)
        self._init_weights(num_layers)

    def _init_weights(self, num_layers: int) -> None:
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        for name, p in self.blocks.named_parameters():
            if name.endswith(("out_proj.weight", "fc2.weight")):
                with torch.no_grad():
                    p.mul_(1 / math.sqrt(2 * num_layers))
        for conv in (*self.spatial_mixers, *self.temporal_mixers):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def _with_positions(self, x: Tensor, start: int) -> Tensor:
        """Tokens ``x`` ``(B, L, d)`` at indices ``start ..``: plus the sin-cos table when ``position="sincos"``."""
        if self.position != "sincos":
            return x
        table = sincos(grid_coords(start, x.shape[1], self.grid, x.device), x.shape[-1])  # (L, d), "grouped"
        return x + table.to(x.dtype)

    def _layer(self, i: int, x: Tensor, cache: KVCache | None) -> Tensor:
        """Layer ``i``: the token convs (if ``spatial_kernel > 0``), then block ``i``; ``(B, L, d)`` → same."""
        if self.spatial_mixers:  # (B, T * M, d) as (B, T, M, d): each frame's grid, or the whole clip
            frames, mixer = x.unflatten(1, (-1, self.frame_tokens)), self.spatial_mixers[i]
            mix = conv_over_grid if isinstance(mixer, nn.Conv2d) else conv_over_clip
            x = x + mix(mixer, frames, self.grid).flatten(1, 2)
            if self.temporal_mixers:
                x = x + self.temporal_mixers[i](x.unflatten(1, (-1, self.frame_tokens))).flatten(1, 2)
        return self.blocks[i](x, cache)

    def _run(self, x: Tensor, caches: list[KVCache] | None) -> Tensor:
        x = self._with_positions(x, caches[0].length if caches else 0)
        for i in range(len(self.blocks)):
            x = self.blocks.run(self._layer, i, x, caches[i] if caches else None, enabled=caches is None)
        return self.norm_out(x)

    def forward(self, x: Tensor) -> Tensor:
        """Tokens ``(B, L, d)`` at indices ``0 .. L - 1`` → features ``(B, L, d)``.

        Each layer is checkpointed when ``self.blocks.gradient_checkpointing`` is on, in training
        (:mod:`~futurelat.models.heads.checkpointing`).
        """
        return self._run(x, None)

    def prefill(self, x: Tensor) -> tuple[Tensor, list[KVCache]]:
        """Start a rollout: tokens ``(B, L, d)`` → features ``(B, L, d)`` and one KV cache per block."""
        caches = [KVCache() for _ in self.blocks]
        return self._run(x, caches), caches

    def step(self, x: Tensor, caches: list[KVCache]) -> tuple[Tensor, list[KVCache]]:
        """Continue the cached sequence with tokens ``(B, L, d)`` → features ``(B, L, d)``; the caches grow
        in place (and are returned). Costs the new tokens against the cached keys; the prefix is never re-run.

        Raises:
            ValueError: a ``"factorized"`` trunk (bidirectional, no cache).
        """
        return self._run(x, caches), caches

    def peek(self, x: Tensor, caches: list[KVCache]) -> Tensor:
        """Tokens ``(B, L, d)`` after the cached sequence → features ``(B, L, d)``, the caches left as they
        were (a maskgit pass over a frame that is not finished yet).

        Raises:
            ValueError: a ``"factorized"`` trunk (no cache).
        """
        lengths = [cache.length for cache in caches]
        out = self._run(x, caches)
        for cache, length in zip(caches, lengths):
            cache.length = length  # what was appended past it is overwritten by the next append
        return out
