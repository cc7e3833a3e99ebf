"""Position codes of the heads' tokens: sin-cos features, rotary embeddings (RoPE) and ALiBi slopes.

Shape notation: ``L`` tokens, ``A`` coordinate axes, ``H`` heads, ``e`` head width. Tokens are laid
out in raster order over frames of a ``(h, w)`` token grid, ``M = h * w`` tokens per frame: token
index ``i`` sits at frame ``i // M``, row ``(i % M) // w``, column ``i % w`` (:func:`grid_coords`).
Every code is computed from coordinates on the fly, so no sequence length is ever out of range.

All codes share one factorized frequency ladder (:func:`axis_angles`): ``n`` frequency pairs are
split between the axes, time first (:func:`axis_split`), and axis ``a`` with ``n_a`` pairs turns
its coordinate ``x_a`` into the angles ``x_a * base**(-k / n_a)``, ``k = 0 .. n_a - 1``,
``base = 10,000`` (the Transformer's ladder, Vaswani et al. 2017).

- ``"sincos"``: fixed sin-cos features of those angles added to the input tokens
  (:func:`sincos`): the 3-D (frame, row, column) variant of MAE's 2-D table (He et al. 2022) in
  the transformer trunk, DiT's table (Peebles & Xie 2023, arXiv:2212.09748) in the DiT trunk, and
  with one axis the DiT's flow-time features.
- ``"rope"``: rotary embedding (Su et al. 2021, RoFormer, arXiv:2104.09864), factorized in 3-D:
  the ``e / 2`` rotation pairs of a head are split between the time, row and column coordinates
  (:func:`rotary`, :func:`apply_rope`), so attention scores depend on the relative ``(t, y, x)`` offset.
- ``"alibi"``: Press, Smith & Lewis 2022, "Train Short, Test Long" (arXiv:2108.12409). Head ``k``
  adds ``-slope_k * |i - j|`` to the score of query ``i`` on key ``j`` (:func:`alibi_slopes`; the
  bias itself is built by :class:`~futurelat.models.heads.attention.Attention`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

#: Where positions enter an attention layer (:class:`~futurelat.models.heads.attention.Attention`).
POSITIONS = ("alibi", "rope", "sincos")
#: Base of the geometric frequency ladders of rope and sincos (the Transformer's 10,000).
FREQUENCY_BASE = 10_000.0
#: How a ladder's frequencies are computed: ``"power"`` ``base ** (-k / n)``, ``"exp"``
#: ``exp(-k ln(base) / n)`` (DiT's, from ADM's ``timestep_embedding``). Equal in exact arithmetic,
#: they round differently in float32; each trunk keeps the one its checkpoints were trained with.
LADDERS = ("power", "exp")
#: Column orders of :func:`sincos`: ``"grouped"`` all sines then all cosines, ``"per_axis"`` each
#: axis' sines and cosines in turn.
LAYOUTS = ("grouped", "per_axis")


def grid_coords(start: int, length: int, grid: tuple[int, int], device: torch.device | None = None) -> Tensor:
    """``(t, y, x)`` of tokens ``start .. start + length - 1`` laid out in raster order over frames.

    Returns:
        ``(length, 3)`` int64: frame, row in ``[0, h)``, column in ``[0, w)``.
    """
    h, w = grid
    index = torch.arange(start, start + length, device=device)
    return torch.stack([index // (h * w), index % (h * w) // w, index % w], dim=-1)


def axis_split(pairs: int, axes: int = 3) -> tuple[int, ...]:
    """Frequency pairs given to each of ``axes`` axes (time first): ``pairs // axes`` to each
    spatial axis, the rest to time (so one axis gets them all)."""
    spatial = pairs // axes
    return (pairs - (axes - 1) * spatial,) + (spatial,) * (axes - 1)


def frequencies(n: int, device: torch.device | None = None, ladder: str = "power") -> Tensor:
    """The ladder ``base**(-k / n)``, ``k = 0 .. n - 1``: ``(n,)`` float32 in ``(0, 1]``, computed as
    ``ladder`` says (one of :data:`LADDERS`)."""
    k = torch.arange(n, device=device, dtype=torch.float32)
    if ladder == "exp":
        return torch.exp(k * (-math.log(FREQUENCY_BASE) / n)) if n else k
    return FREQUENCY_BASE ** (-k / n)


def _per_axis_angles(coords: Tensor, pairs: int, ladder: str) -> list[Tensor]:
    """Each axis' angles ``(L, n_a)`` float32 for ``coords`` ``(L, A)`` (:func:`axis_angles`)."""
    return [coords[:, axis, None].float() * frequencies(n, coords.device, ladder)
            for axis, n in enumerate(axis_split(pairs, coords.shape[1]))]


def axis_angles(coords: Tensor, pairs: int, ladder: str = "power") -> Tensor:
    """Angles ``(L, pairs)`` float32 of the factorized ladder for coordinates ``coords`` ``(L, A)``
    (integer or real, time first).

    Each axis ``a`` with ``n_a`` pairs (:func:`axis_split`) contributes ``coords[:, a] * base**(-k / n_a)``
    for ``k = 0 .. n_a - 1``; the axes' blocks follow each other.
    """
    return torch.cat(_per_axis_angles(coords, pairs, ladder), dim=-1)


def sincos(coords: Tensor, dim: int, *, layout: str = "grouped", ladder: str = "power") -> Tensor:
    """Fixed sin-cos features ``(L, dim)`` float32 in ``[-1, 1]`` of coordinates ``coords`` ``(L, A)``.

    The ``dim // 2`` angles are those of :func:`axis_angles`. ``layout`` (one of :data:`LAYOUTS`):
    ``"grouped"`` is ``[sin(all angles), cos(all angles)]`` (the transformer trunk's table);
    ``"per_axis"`` is ``[sin, cos]`` of axis 0's angles, then of axis 1's, ... (DiT's table and,
    with ``A = 1``, its flow-time features). An odd ``dim`` leaves one zero column: the last one
    (``"grouped"``) or the one after axis 0's features (``"per_axis"``). ``ladder``: one of
    :data:`LADDERS`.
    """
    parts = _per_axis_angles(coords, dim // 2, ladder)
    if layout == "grouped":
        angles = torch.cat(parts, dim=-1)
        return F.pad(torch.cat([angles.sin(), angles.cos()], dim=-1), (0, dim % 2))
    features = [torch.cat([angles.sin(), angles.cos()], dim=-1) for angles in parts]
    features[0] = F.pad(features[0], (0, dim % 2))
    return torch.cat(features, dim=-1)


def rotary(start: int, length: int, grid: tuple[int, int], head_dim: int,
           device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Factorized 3-D RoPE ``(cos, sin)``, each ``(length, head_dim / 2)`` float32, of tokens
    ``start .. start + length - 1`` in raster order over frames of ``grid`` (for :func:`apply_rope`)."""
    angles = axis_angles(grid_coords(start, length, grid, device), head_dim // 2)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the pairs ``(x[..., k], x[..., k + e/2])`` of ``x`` ``(B, H, L, e)`` by angles ``(L, e/2)``.

    ``cos`` and ``sin`` are those of the angles (:func:`rotary`); computed in float32.
    """
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


def alibi_slopes(num_heads: int) -> Tensor:
    """ALiBi's per-head slopes ``(H,)`` in ``(0, 1)``: ``2**(-8 k / H)``, ``k = 1 .. H`` for a power of two.

    Other head counts take the ladder of the next lower power of two ``m`` and add every other
    slope of the ``2 m`` ladder, as in the paper.
    """
    def ladder(n: int) -> list[float]:
        return [2.0 ** (-8.0 * (k + 1) / n) for k in range(n)]

    m = 2 ** int(math.log2(num_heads))
    return torch.tensor(ladder(m) + ladder(2 * m)[0::2][:num_heads - m])
