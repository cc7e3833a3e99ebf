"""FlexAttention for the heads' masked and ALiBi attention (``head.params.backend``).

Shape notation: ``B`` batch, ``H`` heads, ``L`` tokens (queries and keys: a whole sequence), ``e``
head width, ``M`` tokens per frame.

Attention that needs an explicit mask or bias (ALiBi, or the ``"block"`` mask: see
:class:`~futurelat.models.heads.attention.Attention`) has two backends:

- ``"sdpa"``: :func:`torch.nn.functional.scaled_dot_product_attention` with a float mask built per
  chunk of queries (``H x query_chunk x L`` elements; ``-inf`` on hidden keys, plus
  ``-slope_h * |i - j|`` with ALiBi).
- ``"flex"``: :func:`torch.nn.attention.flex_attention.flex_attention` (Dong et al. 2024,
  arXiv:2412.05496) with a ``score_mod`` that subtracts ``slope_h * |q_idx - kv_idx|`` and a
  :class:`~torch.nn.attention.flex_attention.BlockMask` that skips the ``128 x 128`` blocks of hidden
  keys: no ``L x L`` tensor is ever built. On CUDA the call is compiled (``torch.compile``) into
  one fused Triton kernel, forward and backward; the first call of each shape compiles.

Flex serves the calls over a whole sequence (training, and the prefill of a rollout's context).
A call that continues a KV cache (a decode step: one code, or one frame of codes, against ``S``
cached keys, the bias offset by the cache length) always takes SDPA with its small ``(H, L, S)``
bias: a flex kernel would pad the few queries to a 128-row block and recompile as ``S`` grows.

``head.params.backend`` (:data:`BACKENDS`):

- ``"auto"`` (default): flex for ALiBi on CUDA when the head width is at least :data:`MIN_HEAD_DIM`
  (the Triton kernel's minimum) and no attention dropout is active; SDPA elsewhere (always on CPU,
  and for masks without a bias, which SDPA already serves).
  If the compiled kernel fails on its first call (e.g. no Triton), that is logged once and SDPA
  serves every call after.
- ``"sdpa"``: SDPA everywhere.
- ``"flex"``: flex wherever it applies, on every device. On CPU, torch 2.13's FlexAttention runs
  eagerly (unfused: it materializes the scores; for correctness checks) and has no backward, so
  training on CPU raises.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import torch
from torch import Tensor

try:
    from torch.nn.attention.flex_attention import BlockMask, flex_attention
except ImportError:  # torch without FlexAttention: "auto" is SDPA, "flex" refused when called
    BlockMask = flex_attention = None

log = logging.getLogger(__name__)

#: ``head.params.backend`` values of the transformer's attention.
BACKENDS = ("auto", "sdpa", "flex")
#: FlexAttention's sparse block size (queries x keys), torch's default.
BLOCK = 128
#: The smallest head width ``e`` the Triton FlexAttention kernel takes; ``"auto"`` uses SDPA below it.
MIN_HEAD_DIM = 16

_state = {"compiled_ok": False, "broken": None}  # "auto": the first compiled call succeeded / failed (why)


def check_backend(backend: str, dropout: float) -> None:
    """Raise ``ValueError`` for a ``backend`` not in :data:`BACKENDS`, or ``"flex"`` with attention dropout."""
    if backend not in BACKENDS:
        raise ValueError(f"head.params.backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend == "flex" and dropout > 0:
        raise ValueError(f"head.params.backend=flex has no attention dropout; got dropout={dropout} "
                         "(use backend auto or sdpa, or dropout 0)")


def use_flex(backend: str, q: Tensor, dropout: float) -> bool:
    """Whether a whole-sequence call with queries ``q`` ``(B, H, L, e)`` goes through flex (module docstring).

    ``dropout``: the attention dropout active in this call (0 in eval).
    """
    if backend == "flex":
        return True
    return (backend == "auto" and q.is_cuda and q.shape[-1] >= MIN_HEAD_DIM and dropout == 0
            and flex_attention is not None and _state["broken"] is None)


# ---------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------


def _causal(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
    return kv_idx <= q_idx


@functools.lru_cache(maxsize=None)
def mask_mod(mask: str, frame_tokens: int) -> Callable | None:
    """FlexAttention ``mask_mod`` of ``mask`` (``"none"``: ``None``), one function object per
    ``(mask, frame_tokens)``: compiled code guards on it, so every layer shares it."""
    if mask == "causal":
        return _causal
    if mask == "block":
        def block(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            return kv_idx // frame_tokens <= q_idx // frame_tokens
        return block
    return None


def key_limit(mask: str, frame_tokens: int, index: Tensor) -> Tensor:
    """Query ``index`` sees keys ``0 .. limit - 1`` under ``"causal"`` or ``"block"`` (what :func:`mask_mod` says)."""
    return index + 1 if mask == "causal" else (index // frame_tokens + 1) * frame_tokens


@functools.lru_cache(maxsize=32)
def block_mask(mask: str, frame_tokens: int, length: int, device: torch.device) -> BlockMask:
    """The :class:`BlockMask` of ``mask`` (``"causal"`` or ``"block"``) over ``length`` queries and keys.

    Built from the visibility limits, which grow with the query: a ``BLOCK x BLOCK`` tile of keys
    ``[k0, k1)`` for queries ``[q0, q1)`` is *full* (every query sees every key, so the kernel skips
    ``mask_mod``) when it lies inside the sequence and ``k1 <= limit(q0)``, and *partial* when it is
    not full but ``k0 < limit(q1 - 1)``: what :func:`~torch.nn.attention.flex_attention.create_block_mask`
    computes, in ``O((length / BLOCK)**2)`` instead of evaluating ``mask_mod`` on all ``length**2`` pairs.
    """
    blocks = -(-length // BLOCK)
    starts = torch.arange(blocks, device=device) * BLOCK
    ends = (starts + BLOCK).clamp(max=length)
    first = key_limit(mask, frame_tokens, starts)[:, None]  # (blocks, 1): what the tile's first query sees
    last = key_limit(mask, frame_tokens, ends - 1)[:, None]
    inside = (starts + BLOCK <= length)
    full = (ends[None] <= first) & inside[None] & inside[:, None]  # (query blocks, key blocks)
    partial = (starts[None] < last) & ~full

    def ordered(tiles: Tensor) -> tuple[Tensor, Tensor]:  # (1, 1, blocks) counts, (1, 1, blocks, blocks) indices
        tiles = tiles.to(torch.int32)[None, None]
        return tiles.sum(-1, dtype=torch.int32), torch.argsort(tiles, dim=-1, descending=True, stable=True).to(torch.int32)

    return BlockMask.from_kv_blocks(*ordered(partial), *ordered(full), BLOCK_SIZE=BLOCK,
                                    mask_mod=mask_mod(mask, frame_tokens), seq_lengths=(length, length))


# ---------------------------------------------------------------------------------------------
# The call
# ---------------------------------------------------------------------------------------------


def _flex(q: Tensor, k: Tensor, v: Tensor, slopes: Tensor | None, blocks: BlockMask | None) -> Tensor:
    """FlexAttention with ALiBi's ``-slope_h * |i - j|`` when ``slopes`` ``(H,)`` is given.

    The ``score_mod`` is defined here, inside what ``torch.compile`` traces, so ``slopes`` is an
    input of one compiled graph that every layer shares (not a constant of each layer's closure).
    """
    score_mod = None
    if slopes is not None:
        def score_mod(score: Tensor, b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            return score - slopes[h] * (q_idx - kv_idx).abs()
    return flex_attention(q, k, v, score_mod=score_mod, block_mask=blocks)


@functools.cache
def _compiled() -> Callable:
    return torch.compile(_flex)


def flex_attend(q: Tensor, k: Tensor, v: Tensor, *, mask: str, frame_tokens: int, slopes: Tensor | None,
                backend: str) -> Tensor | None:
    """Attention of queries on keys/values, all ``(B, H, L, e)`` over one whole sequence, → ``(B, H, L, e)``.

    ``mask``: ``"none" | "causal" | "block"``; ``slopes``: ALiBi's ``(H,)`` or ``None``. Compiled on
    CUDA, eager elsewhere. With ``backend="auto"`` a failing first compiled call is logged and
    answered by ``None`` (the caller then uses SDPA, as every later call does).

    Raises:
        NotImplementedError: ``backend="flex"`` where torch's FlexAttention cannot run (no
            FlexAttention in this torch, or a backward on CPU); the message says so.
    """
    if flex_attention is None:
        raise NotImplementedError(f"head.params.backend=flex: torch {torch.__version__} has no FlexAttention")
    blocks = None if mask == "none" else block_mask(mask, frame_tokens, q.shape[2], q.device)
    slopes = None if slopes is None else slopes.float()
    if not q.is_cuda:
        try:
            return _flex(q, k, v, slopes, blocks)
        except NotImplementedError as e:  # torch 2.13: no backward on CPU
            raise NotImplementedError(f"head.params.backend=flex on {q.device.type}: {e} "
                                      "(backend auto or sdpa trains there)") from e
    return _compiled_call(q, k, v, slopes, blocks, backend)


def _compiled_call(q: Tensor, k: Tensor, v: Tensor, slopes: Tensor | None, blocks: BlockMask | None,
                   backend: str) -> Tensor | None:
    """:func:`_flex` compiled; under ``"auto"`` a failing first call is logged, remembered and answered by ``None``."""
    if backend == "flex" or _state["compiled_ok"]:
        return _compiled()(q, k, v, slopes, blocks)
    try:
        out = _compiled()(q, k, v, slopes, blocks)
    except Exception as e:  # noqa: BLE001: "auto" must not stop a run that SDPA can serve
        _state["broken"] = f"{type(e).__name__}: {e}"
        log.warning("head.params.backend=auto: FlexAttention failed on its first call (%s); SDPA serves every "
                    "attention call from now on", _state["broken"][:500])
        return None
    _state["compiled_ok"] = True
    return out

