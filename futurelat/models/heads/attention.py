"""Attention building blocks of the heads: one attention layer (self- or cross-), masks, a KV cache, blocks.

Shape notation: ``B`` batch, ``L`` tokens in the call, ``S`` tokens before them (in a
:class:`KVCache`, or the context of a cross-attention), ``H`` heads, ``d`` model width,
``e = d / H`` head width. Tokens are laid out in raster order over frames of a ``(h, w)`` token
grid, ``M = h * w`` tokens per frame: token index ``i`` sits at frame ``i // M``, row
``(i % M) // w``, column ``i % w`` (:func:`~futurelat.models.heads.positions.grid_coords`).

Position encodings (``position``, one of :data:`~futurelat.models.heads.positions.POSITIONS`; the
codes themselves are in :mod:`futurelat.models.heads.positions`):

- ``"alibi"``: head ``k`` adds ``-slope_k * |i - j|`` to the score of query ``i`` on key ``j``
  (1-D raster distance). The bias is built per chunk of queries, so memory stays
  ``O(H * query_chunk * L)`` instead of ``O(H * L**2)``.
- ``"rope"``: factorized 3-D rotary embedding of the queries and keys, so scores depend on the
  relative ``(t, y, x)`` offset.
- ``"sincos"``: fixed sin-cos features added to the input tokens by the trunk; the attention layers
  then add no position information of their own.

Masks (``mask``): ``"none"`` (bidirectional), ``"causal"`` (key ``j <= i``) and ``"block"``
(block-causal over frames: key frame ``<=`` query frame, so tokens of a frame see each other and
every earlier frame). The attention itself is :func:`torch.nn.functional.scaled_dot_product_attention`
(flash / memory-efficient kernels on CUDA); ``is_causal=True`` or no mask at all is used whenever no
bias is needed, and an explicit mask is only ever built for one chunk of queries at a time. Where a
mask or bias is needed over a whole sequence, ``backend`` may route the call through FlexAttention
instead (a fused kernel on CUDA; :mod:`futurelat.models.heads.flex`).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from futurelat.models.heads.flex import check_backend, flex_attend, use_flex
from futurelat.models.heads.positions import POSITIONS, alibi_slopes, apply_rope, rotary

MASKS = ("none", "causal", "block")
#: On CPU, unmasked attention over at most this many keys runs SDPA's math backend: for the short
#: sequences of factorized attention (64 tokens per frame, 20 frames) it is faster than the fused CPU
#: kernel (docs/ablations.md). Longer sequences keep the fused kernel, which never holds the L x L scores.
CPU_MATH_MAX_KEYS = 256


# ---------------------------------------------------------------------------------------------
# KV cache
# ---------------------------------------------------------------------------------------------


class KVCache:
    """Keys and values of one attention layer for incremental decoding.

    Holds ``(B, H, capacity, e)`` buffers of which the first :attr:`length` tokens are valid; the
    capacity doubles when full, so appending costs amortized ``O(new tokens)``. With rope the keys
    are stored rotated, so cached tokens are never recomputed. Keys or values that need gradients
    (training through a rollout, as unrolled training does) are concatenated instead of written in place.
    """

    def __init__(self) -> None:
        self.keys: Tensor | None = None
        self.values: Tensor | None = None
        self.length = 0

    def append(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Add ``(B, H, L, e)`` keys and values → all ``(B, H, S + L, e)`` keys and values (views)."""
        end = self.length + keys.shape[2]
        if keys.requires_grad or values.requires_grad:  # training through a rollout: no in-place writes
            past = (self.keys[:, :, :self.length], self.values[:, :, :self.length]) if self.length else None
            self.keys = torch.cat([past[0], keys], dim=2) if past else keys
            self.values = torch.cat([past[1], values], dim=2) if past else values
            self.length = end
            return self.keys, self.values
        if self.keys is None or end > self.keys.shape[2]:
            capacity = max(end, 2 * self.length)
            self.keys, self.values = self._grown(self.keys, keys, capacity), self._grown(self.values, values, capacity)
        self.keys[:, :, self.length:end] = keys
        self.values[:, :, self.length:end] = values
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]

    def _grown(self, old: Tensor | None, new: Tensor, capacity: int) -> Tensor:
        """A ``(B, H, capacity, e)`` buffer like ``new`` holding the ``length`` valid tokens of ``old``."""
        buffer = new.new_empty(*new.shape[:2], capacity, new.shape[3])
        if old is not None:
            buffer[:, :, :self.length] = old[:, :, :self.length]
        return buffer


# ---------------------------------------------------------------------------------------------
# Attention and the block
# ---------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head attention over raster-ordered tokens: self-attention ``(B, L, d)`` → ``(B, L, d)``,
    or with ``cross=True`` attention from tokens ``(B, L, d)`` to the ``(B, S, d)`` tokens before them.

    Self-attention projects queries, keys and values with one fused linear (``qkv``); cross-attention
    projects the queries (``q``) and the context's keys and values (``kv``) apart. Both end with
    ``out_proj``.

    Args:
        dim: ``d``. num_heads: ``H``, divides ``d``.
        position: one of :data:`~futurelat.models.heads.positions.POSITIONS` (``"sincos"`` is added
            to the input by the caller; the layer then uses no position information itself).
        mask: one of :data:`MASKS`.
        grid: ``(h, w)`` tokens per frame: rope coordinates and the frames of the ``"block"`` mask.
        dropout: attention-weight dropout probability, in training only.
        query_chunk: queries per attention call whenever an explicit mask or ALiBi bias is needed;
            bounds that tensor to ``H * query_chunk * (S + L)`` elements.
        cross: attend from the tokens to a context (:meth:`forward`'s ``context``) instead of to each other.
        cpu_math_max_keys: on CPU, attention in which every query sees every key, over at most this
            many keys, runs SDPA's math backend (:data:`CPU_MATH_MAX_KEYS`); 0 leaves the choice of
            kernel to torch (the DiT trunk's attention, as its checkpoints were trained).
        backend: ``"auto" | "sdpa" | "flex"``: how a self-attention call over a whole sequence that
            needs a mask or ALiBi bias runs (:mod:`futurelat.models.heads.flex`); calls that
            continue a cache, and every other call, run SDPA.

    Raises:
        ValueError: ``position``, ``mask`` or ``backend`` not among the valid names (listed in the
            message), or ``backend="flex"`` with ``dropout > 0``.
    """

    def __init__(self, dim: int, num_heads: int, *, position: str, mask: str, grid: tuple[int, int],
                 dropout: float = 0.0, query_chunk: int = 1024, cross: bool = False,
                 cpu_math_max_keys: int = CPU_MATH_MAX_KEYS, backend: str = "auto"):
        super().__init__()
        if position not in POSITIONS or mask not in MASKS:
            raise ValueError(f"attention position must be one of {POSITIONS} and mask one of {MASKS}; "
                             f"got position={position!r}, mask={mask!r}")
        check_backend(backend, dropout)
        self.backend = backend
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.position, self.mask, self.grid = position, mask, tuple(grid)
        self.frame_tokens = grid[0] * grid[1]
        self.dropout, self.query_chunk = dropout, query_chunk
        self.cross, self.cpu_math_max_keys = cross, cpu_math_max_keys
        if cross:
            self.q, self.kv = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim)
        else:
            self.qkv = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)
        if position == "alibi":
            self.register_buffer("slopes", alibi_slopes(num_heads), persistent=False)

    def forward(self, x: Tensor, cache: KVCache | None = None, *, context: Tensor | None = None,
                start: int = 0) -> Tensor:
        """Attend tokens ``x`` ``(B, L, d)``, at indices ``start + S .. start + S + L - 1``, → ``(B, L, d)``.

        Self-attention: without a cache ``S = 0`` and the tokens attend to each other; with one,
        ``S = cache.length``, the new keys/values are appended to it and the queries attend to all
        ``S + L`` keys. Cross-attention: ``context`` ``(B, S, d)`` holds the tokens at
        ``start .. start + S - 1``, and the queries attend to them only. ``start`` places the rope
        coordinates; masks and ALiBi count from it.

        Raises:
            ValueError: ``context`` missing (cross-attention) or given (self-attention), or a cache
                given to a cross-attention.
        """
        if self.cross != (context is not None) or (self.cross and cache is not None):
            raise ValueError(f"a {'cross' if self.cross else 'self'}-attention layer takes "
                             f"{'a context and no cache' if self.cross else 'no context'}")
        bsz, length, dim = x.shape
        if self.cross:
            before = context.shape[1]
            q = self.q(x).view(bsz, length, self.num_heads, self.head_dim).transpose(1, 2)
            k, v = self.kv(context).view(bsz, before, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        else:
            before = cache.length if cache is not None else 0
            q, k, v = self.qkv(x).view(bsz, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.position == "rope":
            cos, sin = rotary(start + before, length, self.grid, self.head_dim, x.device)
            q = apply_rope(q, cos, sin)
            k = apply_rope(k, *rotary(start, before, self.grid, self.head_dim, x.device)) if self.cross else \
                apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.append(k, v)
        y = self._attend(q, k, v, before)  # (B, H, L, e)
        return self.out_proj(y.transpose(1, 2).reshape(bsz, length, dim))

    def _limit(self, index: int | Tensor, num_keys: int) -> int | Tensor:
        """Query ``index`` sees keys ``0 .. limit - 1`` (a limit past ``num_keys`` means all of them)."""
        if self.mask == "causal":
            return index + 1
        if self.mask == "block":
            return (index // self.frame_tokens + 1) * self.frame_tokens
        return num_keys

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, start: int) -> Tensor:
        """Queries ``(B, H, L, e)`` at ``start ..`` (counted from the first key), keys/values
        ``(B, H, S + L, e)`` (or ``(B, H, S, e)``: a cross-attention's) → ``(B, H, L, e)``."""
        num_queries, num_keys = q.shape[2], k.shape[2]
        dropout = self.dropout if self.training else 0.0
        if self.position != "alibi":
            if self._limit(start, num_keys) >= num_keys:  # every query sees every key
                short_on_cpu = q.device.type == "cpu" and num_keys <= self.cpu_math_max_keys
                with sdpa_kernel(SDPBackend.MATH) if short_on_cpu else contextlib.nullcontext():
                    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
            if self.mask == "causal" and num_queries == num_keys:
                return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        # A whole sequence; "auto" sends only ALiBi there (masks without a bias keep the SDPA path GPU runs had).
        if (not self.cross and start == 0 and use_flex(self.backend, q, dropout)
                and (self.backend == "flex" or self.position == "alibi")):
            slopes = self.slopes if self.position == "alibi" else None
            y = flex_attend(q, k, v, mask=self.mask, frame_tokens=self.frame_tokens, slopes=slopes,
                            backend=self.backend)
            if y is not None:  # None: "auto" found flex broken on its first call
                return y
        chunks = []
        for q0 in range(start, start + num_queries, self.query_chunk):  # absolute token indices
            q1 = min(q0 + self.query_chunk, start + num_queries)
            keys = min(self._limit(q1 - 1, num_keys), num_keys)  # the chunk's last query sees the most keys
            bias = self._chunk_bias(q0, q1, keys, q.dtype, q.device)
            chunks.append(F.scaled_dot_product_attention(q[:, :, q0 - start:q1 - start], k[:, :, :keys],
                                                         v[:, :, :keys], attn_mask=bias, dropout_p=dropout))
        return torch.cat(chunks, dim=2)

    def _chunk_bias(self, q0: int, q1: int, num_keys: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        """Additive mask ``(1, H or 1, q1 - q0, num_keys)`` in ``dtype`` of queries ``q0 .. q1 - 1`` on keys ``0 ..``.

        ``-inf`` on hidden keys, plus ``-slope * |i - j|`` with ALiBi. Only keys ``j >= q0`` can lie
        after a query (and be hidden), so only that tail needs the absolute value and the mask. The
        mask is 4-D and float, which keeps CPU attention on its fused kernel (a 3-D or bool mask
        falls back to materializing the scores), and a view of rows padded to a multiple of 8
        keys, the stride CUDA's memory-efficient kernel needs (it would otherwise copy the mask).
        """
        width = -(-num_keys // 8) * 8
        query = torch.arange(q0, q1, device=device, dtype=torch.float32)[:, None]  # (c, 1)
        if self.position == "alibi":
            slopes = self.slopes[:, None, None]  # (H, 1, 1)
            key = torch.arange(width, device=device, dtype=torch.float32)
            bias = slopes * key - slopes * query  # (H, c, width): slope * (j - i), in one pass
            tail = bias[:, :, q0:].abs_().neg_()  # now -slope * |i - j| everywhere
        else:
            bias = torch.zeros(1, q1 - q0, width, device=device)
            tail = bias[:, :, q0:]
        if self.mask != "none":
            hidden = torch.arange(q0, width, device=device) >= self._limit(query, num_keys)  # (c, width - q0)
            tail.masked_fill_(hidden, -math.inf)
        return bias.to(dtype)[None, :, :, :num_keys]


class MLP(nn.Module):
    """Per-token ``Linear(d, r d) → GELU → Linear(r d, d)``: ``(..., d)`` → ``(..., d)``.

    Shared by every head. Exact (erf) GELU: on CPU it is twice as fast as the tanh approximation.
    """

    def __init__(self, dim: int, ratio: float, dropout: float):
        super().__init__()
        hidden = max(1, int(round(ratio * dim)))
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.drop(F.gelu(self.fc1(x))))


def channels_last_weight(conv: nn.Conv2d | nn.Conv3d) -> nn.Conv2d | nn.Conv3d:
    """Store ``conv``'s weight channels-last (in place; returns ``conv``) for :func:`conv_over_grid` /
    :func:`conv_over_clip`.

    Those feed the conv a channels-last view of the tokens, so autograd makes the weight's gradient
    channels-last too. A weight stored contiguously then breaks DDP's gradient layout contract
    (the gradient's strides differ from the parameter's bucket view: a warning, and a copy per
    all-reduce); stored channels-last, the two match. Values, and so the conv's output, are unchanged.
    """
    w = conv.weight.data  # (out, in, *kernel)
    strides = [1]  # channels innermost, then the kernel dims from the last, then out
    for size in (w.shape[1], *reversed(w.shape[2:])):
        strides.append(strides[-1] * size)
    # explicit strides: torch's memory_format counts a depthwise weight (in = 1) as channels-last already
    order = [strides[-1], strides[0], *reversed(strides[1:-1])]  # (out, in, *kernel)
    conv.weight.data = torch.empty_strided(w.shape, order, dtype=w.dtype, device=w.device).copy_(w)
    return conv


def conv_over_grid(conv: nn.Conv2d, x: Tensor, grid: tuple[int, int]) -> Tensor:
    """``conv`` over each frame's ``(h, w)`` token grid: ``x`` ``(..., N = h * w, d)`` → ``(..., N, d)``.

    The leading dimensions (batch, frames) fold into the conv's batch; tokens are in raster order.
    Build ``conv`` with :func:`channels_last_weight` (DDP's gradient layout).
    """
    lead, (n, d), (h, w) = x.shape[:-2], x.shape[-2:], grid
    y = conv(x.reshape(-1, h, w, d).permute(0, 3, 1, 2))  # (prod(lead), d, h, w), a channels-last view
    return y.permute(0, 2, 3, 1).reshape(*lead, n, y.shape[1])


def conv_over_clip(conv: nn.Conv3d, x: Tensor, grid: tuple[int, int]) -> Tensor:
    """``conv`` over a clip's ``(T, h, w)`` token volume: ``x`` ``(B, T, N = h * w, d)`` → ``(B, T, N, d)``.

    Build ``conv`` with :func:`channels_last_weight` (DDP's gradient layout).
    """
    (b, t, n, d), (h, w) = x.shape, grid
    y = conv(x.reshape(b, t, h, w, d).permute(0, 4, 1, 2, 3))  # (B, d, T, h, w), a channels-last view
    return y.permute(0, 2, 3, 4, 1).reshape(b, t, n, y.shape[1])


class TemporalDepthwiseConv(nn.Module):
    """Depthwise conv over frames: ``(B, T, N, d)`` → ``(B, T, N, d)``, zero-padded at both ends.

    The temporal half of a (2+1)D convolution (R(2+1)D, Tran et al. 2018, arXiv:1711.11248): channel
    ``c`` of token ``n`` at frame ``t`` becomes ``bias[c] + sum_a weight[a, c] * x[t + a - kernel // 2, n, c]``.
    Computed as ``kernel`` shifted multiply-adds on the token tensor, which on CPU costs half of an
    ``nn.Conv1d`` and its two transposes. Weights start at zero (a residual branch that starts off).

    Args:
        dim: channels ``d``. kernel: frames spanned, odd.
    """

    def __init__(self, dim: int, kernel: int):
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"temporal conv kernel must be a positive odd number; got {kernel}")
        self.weight = nn.Parameter(torch.zeros(kernel, dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        kernel, frames = self.weight.shape[0], x.shape[1]
        padded = F.pad(x, (0, 0, 0, 0, kernel // 2, kernel // 2))  # (B, T + kernel - 1, N, d)
        out = self.bias + padded[:, :frames] * self.weight[0]
        for a in range(1, kernel):
            out = out + padded[:, a:a + frames] * self.weight[a]
        return out


class Block(nn.Module):
    """Pre-norm transformer block ``x + attn(LN(x))``, then ``x + mlp(LN(x))``: ``(B, L, d)`` → ``(B, L, d)``.

    Keyword arguments (position, mask, grid, query_chunk) go to :class:`Attention`; ``dropout``
    applies to attention weights, MLP hidden units and both residual branches (training only).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float, **attention):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, dropout=dropout, **attention)
        self.mlp = MLP(dim, mlp_ratio, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        """``x`` ``(B, L, d)``; with ``cache`` the tokens continue the cached sequence (see :class:`Attention`)."""
        x = x + self.drop(self.attn(self.norm1(x), cache))
        return x + self.drop(self.mlp(self.norm2(x)))


class FactorizedBlock(nn.Module):
    """Space-time factorized block over ``T`` frames of ``M = h * w`` tokens: ``(B, T * M, d)`` → same.

    ``x + spatial(LN(x))`` (each frame's ``M`` tokens attend to each other), ``x + temporal(LN(x))``
    (each grid cell's ``T`` tokens attend to each other), then ``x + mlp(LN(x))``: the
    "factorised self-attention" of ViViT (Arnab et al. 2021, arXiv:2103.15691, model 3) and
    TimeSformer's divided space-time attention (Bertasius et al. 2021, arXiv:2102.05095). Attention
    costs ``T * M * (M + T)`` scores instead of ``(T * M)**2``. No mask: a bidirectional block for
    the regression objective. With ``position="rope"`` the spatial attention rotates by (row,
    column) and the temporal one by frame.

    Args:
        dim, num_heads, mlp_ratio, dropout: as :class:`Block`.
        grid: ``(h, w)`` tokens per frame. position: ``"rope"`` or ``"sincos"`` (added by the caller).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float, *, grid: tuple[int, int],
                 position: str):
        super().__init__()
        self.frame_tokens = grid[0] * grid[1]
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.spatial = Attention(dim, num_heads, position=position, mask="none", grid=grid, dropout=dropout)
        # one "frame" of one token per step: rope coordinates (t, 0, 0)
        self.temporal = Attention(dim, num_heads, position=position, mask="none", grid=(1, 1), dropout=dropout)
        self.mlp = MLP(dim, mlp_ratio, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        """``x`` ``(B, T * M, d)``, frame-major (raster order within a frame) → ``(B, T * M, d)``.

        Raises:
            ValueError: a ``cache`` is given (a bidirectional block cannot extend a sequence).
        """
        if cache is not None:
            raise ValueError("FactorizedBlock has no KV cache: it serves the regression objective only")
        bsz, length, dim = x.shape
        m = self.frame_tokens
        frames = length // m
        x = x + self.drop(self.spatial(self.norm1(x).reshape(bsz * frames, m, dim))).reshape(bsz, length, dim)
        cells = self.norm2(x).view(bsz, frames, m, dim).transpose(1, 2).reshape(bsz * m, frames, dim)
        y = self.temporal(cells).view(bsz, m, frames, dim).transpose(1, 2).reshape(bsz, length, dim)
        x = x + self.drop(y)
        return x + self.drop(self.mlp(self.norm3(x)))
