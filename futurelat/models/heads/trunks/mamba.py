"""Mamba-2 trunks: a scan over time per grid position (frames), or over one raster sequence (tokens).

Shape notation: ``B`` batch, ``T`` frames, ``(h', w')`` the token grid of a frame, ``M = h' w'``
tokens per frame, ``L`` tokens in a call, ``d`` width. Tokens are in raster order over frames.

- :class:`MambaFrameTrunk` (``causal = "frame"``): every block mixes each grid position's history
  with a Mamba-2 mixer over ``T`` (sequences ``(B * M, T, d)``), then mixes space inside each frame
  with a depthwise ``spatial_kernel x spatial_kernel`` conv over the grid followed by an MLP (a
  ConvNeXt block, Liu et al. 2022). A rollout steps one frame at a time.
- :class:`MambaTokenTrunk` (``causal = "token"``): Mamba-2 + MLP blocks over one sequence of
  ``T * M`` tokens; a rollout steps one token at a time.

Both add a learned (row, column) embedding of each token's grid position to their input (no time
embedding, so no length is out of range). Rollouts run the context once with the parallel (chunked)
scan, keep each layer's recurrent state (conv window + SSM state) and then step at constant cost.
Mamba: Gu & Dao 2023 (arXiv:2312.00752); Mamba-2 / SSD: Dao & Gu 2024 (arXiv:2405.21060); the mixer
and its backends are in :mod:`futurelat.models.heads.mamba_layers`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from futurelat.models.heads.attention import MLP, channels_last_weight, conv_over_grid
from futurelat.models.heads.checkpointing import CheckpointableBlocks
from futurelat.models.heads.mamba_layers import Mamba2Mixer, MixerState, resolve_backend


class FrameBlock(nn.Module):
    """Temporal Mamba-2 per grid position, then spatial ConvNeXt-style mixing inside each frame.

    ``x`` ``(B, T, M, d)`` → ``(B, T, M, d)``, causal in ``T``; pre-norm residual branches.
    """

    def __init__(self, dim: int, grid: tuple[int, int], mixer: dict[str, Any], spatial_kernel: int,
                 mlp_ratio: float, dropout: float):
        super().__init__()
        self.grid = grid
        self.norm1 = nn.LayerNorm(dim)
        self.temporal = Mamba2Mixer(dim, **mixer)
        self.spatial = channels_last_weight(
            nn.Conv2d(dim, dim, spatial_kernel, padding=spatial_kernel // 2, groups=dim))
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_ratio, dropout)
        self.drop = nn.Dropout(dropout)

    def _space(self, x: Tensor) -> Tensor:
        """``(..., M, d)`` → the MLP branch ``mlp(norm(dwconv(x)))`` ``(..., M, d)``."""
        return self.drop(self.mlp(self.norm2(conv_over_grid(self.spatial, x, self.grid))))

    def forward(self, x: Tensor, state: MixerState | None = None) -> tuple[Tensor, MixerState]:
        bsz, frames, n, d = x.shape
        y = self.norm1(x).transpose(1, 2).reshape(bsz * n, frames, d)  # one sequence per position
        y, state = self.temporal(y, state)
        x = x + self.drop(y.view(bsz, n, frames, d).transpose(1, 2))
        return x + self._space(x), state

    def step(self, x: Tensor, state: MixerState) -> tuple[Tensor, MixerState]:
        """One frame ``(B, M, d)`` → ``(B, M, d)`` and the new state."""
        bsz, n, d = x.shape
        y, state = self.temporal.step(self.norm1(x).reshape(bsz * n, d), state)
        x = x + self.drop(y.view(bsz, n, d))
        return x + self._space(x), state


class TokenBlock(nn.Module):
    """Mamba-2 mixer then MLP over one long token sequence: ``(B, L, d)`` → ``(B, L, d)``, causal."""

    def __init__(self, dim: int, mixer: dict[str, Any], mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mixer = Mamba2Mixer(dim, **mixer)
        self.mlp = MLP(dim, mlp_ratio, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, state: MixerState | None = None) -> tuple[Tensor, MixerState]:
        y, state = self.mixer(self.norm1(x), state)
        x = x + self.drop(y)
        return x + self.drop(self.mlp(self.norm2(x))), state

    def step(self, x: Tensor, state: MixerState) -> tuple[Tensor, MixerState]:
        """One token ``(B, d)`` → ``(B, d)`` and the new state."""
        y, state = self.mixer.step(self.norm1(x), state)
        x = x + self.drop(y)
        return x + self.drop(self.mlp(self.norm2(x))), state


class _MambaTrunk(nn.Module):
    """What both trunks share: the grid, the (row, column) embedding, the blocks and the final norm.

    Args (keyword-only; the head validates them, naming ``head.params.<key>``):
        d_model: ``d``. num_layers: blocks (subclasses). grid: ``(h', w')`` tokens per frame.
        d_state, expand, head_dim, conv_kernel, chunk_size, backend: the Mamba-2 mixer's
            (:class:`~futurelat.models.heads.mamba_layers.Mamba2Mixer`); the resolved backend is ``self.backend``.
        mlp_ratio: each block's MLP hidden width in multiples of ``d``.
        dropout: on residual branches and MLP hidden units (training only).

    Weights keep PyTorch's initialization (the mixer's own ``dt`` and ``A``): :func:`gpt2_init`
    initializes a head built on this trunk.
    """

    causal: str

    def __init__(self, *, d_model: int, grid: tuple[int, int], d_state: int, expand: int, head_dim: int,
                 conv_kernel: int, chunk_size: int, backend: str):
        super().__init__()
        self.width, self.grid = d_model, tuple(grid)
        self.frame_tokens = grid[0] * grid[1]  # M
        self.row_embed = nn.Parameter(torch.zeros(grid[0], d_model))
        self.col_embed = nn.Parameter(torch.zeros(grid[1], d_model))
        self.mixer_args = dict(d_state=d_state, expand=expand, head_dim=head_dim, conv_kernel=conv_kernel,
                          chunk_size=chunk_size, backend=backend)
        self.backend = resolve_backend(backend)

    def positions(self) -> Tensor:
        """``(M, d)`` learned (row, column) embedding of the grid's positions, raster order."""
        return (self.row_embed[:, None] + self.col_embed[None]).flatten(0, 1)


class MambaFrameTrunk(_MambaTrunk):
    """Frame-causal Mamba-2 trunk: tokens ``(B, T * M, d)`` → features ``(B, T * M, d)``.

    Args: as :class:`_MambaTrunk`, plus ``spatial_kernel`` (odd side of the depthwise conv over the grid).
    """

    causal = "frame"

    def __init__(self, *, d_model: int, num_layers: int, grid: tuple[int, int], d_state: int, expand: int,
                 head_dim: int, conv_kernel: int, chunk_size: int, backend: str, spatial_kernel: int,
                 mlp_ratio: float, dropout: float):
        super().__init__(d_model=d_model, grid=grid, d_state=d_state, expand=expand, head_dim=head_dim,
                         conv_kernel=conv_kernel, chunk_size=chunk_size, backend=backend)
        self.blocks = CheckpointableBlocks(
            FrameBlock(d_model, self.grid, self.mixer_args, spatial_kernel, mlp_ratio, dropout)
            for _ in range(num_layers))
        self.norm_out = nn.LayerNorm(d_model)

    def _frames(self, x: Tensor) -> Tensor:
        """``(B, T * M, d)`` → ``(B, T, M, d)`` plus the position embedding."""
        return x.unflatten(1, (-1, self.frame_tokens)) + self.positions()

    def forward(self, x: Tensor) -> Tensor:
        """Tokens of whole frames ``(B, T * M, d)`` → features ``(B, T * M, d)``; frame ``t``'s see frames ``<= t``.

        Each block is checkpointed when ``self.blocks.gradient_checkpointing`` is on, in training.
        """
        x = self._frames(x)
        for block in self.blocks:
            x, _ = self.blocks.run(block, x)
        return self.norm_out(x).flatten(1, 2)

    def prefill(self, x: Tensor) -> tuple[Tensor, list[MixerState]]:
        """Start a rollout: ``(B, T * M, d)`` → features ``(B, T * M, d)`` and each block's state."""
        x, states = self._frames(x), []
        for block in self.blocks:
            x, state = block(x)
            states.append(state)
        return self.norm_out(x).flatten(1, 2), states

    def step(self, x: Tensor, states: list[MixerState]) -> tuple[Tensor, list[MixerState]]:
        """One frame ``(B, M, d)`` → features ``(B, M, d)`` and the new states, at constant cost."""
        x, new_states = x + self.positions(), []
        for block, state in zip(self.blocks, states):
            x, state = block.step(x, state)
            new_states.append(state)
        return self.norm_out(x), new_states

    def peek(self, x: Tensor, states: list[MixerState]) -> Tensor:
        """One frame ``(B, M, d)`` → features ``(B, M, d)``; ``states`` are not advanced (each step
        returns new state tensors), as a maskgit pass over an unfinished frame needs."""
        return self.step(x, states)[0]


class MambaTokenTrunk(_MambaTrunk):
    """Token-causal Mamba-2 trunk: tokens ``(B, L, d)`` in raster order → features ``(B, L, d)``.

    Token ``i`` gets the position embedding of grid cell ``i % M``. Args: as :class:`_MambaTrunk`.
    """

    causal = "token"

    def __init__(self, *, d_model: int, num_layers: int, grid: tuple[int, int], d_state: int, expand: int,
                 head_dim: int, conv_kernel: int, chunk_size: int, backend: str, mlp_ratio: float, dropout: float):
        super().__init__(d_model=d_model, grid=grid, d_state=d_state, expand=expand, head_dim=head_dim,
                         conv_kernel=conv_kernel, chunk_size=chunk_size, backend=backend)
        self.blocks = CheckpointableBlocks(TokenBlock(d_model, self.mixer_args, mlp_ratio, dropout)
                                           for _ in range(num_layers))
        self.norm_out = nn.LayerNorm(d_model)

    def _placed(self, x: Tensor, start: int) -> Tensor:
        """Tokens ``(B, L, d)`` at indices ``start ..`` plus their position embedding."""
        where = torch.arange(start, start + x.shape[1], device=x.device) % self.frame_tokens
        return x + self.positions()[where]

    def forward(self, x: Tensor) -> Tensor:
        """Tokens ``(B, L, d)`` at indices ``0 .. L - 1`` → features ``(B, L, d)``; checkpointable as above."""
        x = self._placed(x, 0)
        for block in self.blocks:
            x, _ = self.blocks.run(block, x)
        return self.norm_out(x)

    def prefill(self, x: Tensor) -> tuple[Tensor, tuple[list[MixerState], int]]:
        """Start a rollout: ``(B, L, d)`` (any ``L >= 1``) → features ``(B, L, d)`` and (states, next index)."""
        h, states = self._placed(x, 0), []
        for block in self.blocks:
            h, state = block(h, None)
            states.append(state)
        return self.norm_out(h), (states, x.shape[1])

    def step(self, x: Tensor, state: tuple[list[MixerState], int]) -> tuple[Tensor, tuple[list[MixerState], int]]:
        """One token ``(B, 1, d)`` → features ``(B, 1, d)`` and the new state, at constant cost."""
        states, index = state
        h, new_states = self._placed(x, index)[:, 0], []
        for block, s in zip(self.blocks, states):
            h, s = block.step(h, s)
            new_states.append(s)
        return self.norm_out(h)[:, None], (new_states, index + 1)


def gpt2_init(head: nn.Module, trunk: _MambaTrunk, num_layers: int) -> None:
    """GPT-2-style initialization of a head built on a Mamba trunk (its objective's layers included).

    Every linear of ``head`` ``N(0, 0.02)`` with zero bias, then every embedding ``N(0, 0.02)``, then
    the trunk's (row, column) embeddings ``N(0, 0.02)``; residual outputs (``out_proj``, ``fc2``)
    scaled by ``1 / sqrt(2 L)``. Modules in ``head.modules()`` order (the random draws depend on it).
    """
    for module in head.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    for module in head.modules():
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
    for p in (trunk.row_embed, trunk.col_embed):
        nn.init.normal_(p, std=0.02)
    for name, p in head.named_parameters():
        if name.endswith(("out_proj.weight", "fc2.weight")):
            with torch.no_grad():
                p.mul_(1 / math.sqrt(2 * num_layers))
