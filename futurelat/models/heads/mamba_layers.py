"""Mamba-2 mixer with a parallel (chunked) scan for training and a recurrent step for sampling.

Which path runs where: the layer is the Mamba-2 / SSD mixer of Dao & Gu 2024 (one scalar decay
per head, ``ngroups = 1``) with the same parameter names and shapes as ``mamba_ssm``'s ``Mamba2``.
On CUDA with ``mamba-ssm`` installed (``pip install futurelat[cuda]``) the training/prefill scan
is its fused Triton kernel ``mamba_chunk_scan_combined``; everywhere else (CPU, or no
``mamba-ssm``) it is the pure-PyTorch chunked SSD scan below (the ``ssd_minimal`` algorithm),
since Mamba-1's selective scan in plain PyTorch is far too slow to train on a CPU. The
one-token recurrent step is plain PyTorch on every device; both backends share the weights.

References:
    Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
    arXiv:2312.00752. Dao & Gu 2024, "Transformers are SSMs: Generalized Models and Efficient
    Algorithms Through Structured State Space Duality" (Mamba-2 / SSD), arXiv:2405.21060;
    reference code github.com/state-spaces/mamba (``mamba_ssm/modules/mamba2.py``,
    ``mamba_ssm/modules/ssd_minimal.py``).

Shape notation: ``b`` batch (sequences), ``l`` length, ``d`` model width, ``h`` heads,
``p`` head dim, ``n`` SSM state size, ``k`` conv kernel.
"""

from __future__ import annotations

import importlib
import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BACKENDS = ("auto", "mamba_ssm", "torch")
log = logging.getLogger(__name__)
_announced: set[str] = set()  # scan choices already logged by this process


def _import_mamba_ssm_scan():
    """``mamba_ssm``'s fused chunk-scan kernel, imported lazily (it needs CUDA + Triton)."""
    module = importlib.import_module("mamba_ssm.ops.triton.ssd_combined")
    return module.mamba_chunk_scan_combined


def _mamba_ssm_import_error() -> str | None:
    """Why ``mamba_ssm``'s kernel does not import (``"mamba_ssm not installed: ..."``), or ``None`` if it does."""
    try:
        _import_mamba_ssm_scan()
    except ModuleNotFoundError as err:
        return f"mamba_ssm not installed: {err}"
    except Exception as err:  # a broken CUDA/Triton build raising at import time
        return f"mamba_ssm failed to import: {type(err).__name__}: {err}"
    return None


def _announce(message: str, level: int = logging.INFO) -> None:
    """Log ``message`` once per process (every layer resolves its backend; the choice is said once)."""
    if message not in _announced:
        _announced.add(message)
        log.log(level, message)


def resolve_backend(backend: str) -> str:
    """``"auto" | "mamba_ssm" | "torch"`` → the backend that will run (``"mamba_ssm"`` or ``"torch"``).

    ``"auto"`` picks ``"mamba_ssm"`` when the package imports and CUDA is available. The choice
    and its reason are logged once per process, e.g. ``mamba scan: torch (mamba_ssm not
    installed: No module named 'mamba_ssm')``; a warning when CUDA is available but the
    kernel is not.

    Raises:
        ValueError: unknown name.
        ImportError: ``"mamba_ssm"`` requested but the package (or its CUDA build) is missing.
    """
    if backend not in BACKENDS:
        raise ValueError(f"mamba backend must be one of {BACKENDS}; got {backend!r} (key head.params.backend)")
    if backend == "torch":
        _announce("mamba scan: torch (head.params.backend=torch)")
        return "torch"
    error = _mamba_ssm_import_error()
    if error and backend == "mamba_ssm":
        raise ImportError(
            "head.params.backend='mamba_ssm' needs the mamba-ssm CUDA kernels (pip install 'futurelat[cuda]', "
            f"i.e. mamba-ssm>=2.2, on a CUDA machine); {error}. "
            "Use backend='torch' (or 'auto') for the pure-PyTorch scan."
        )
    if error:
        cuda = torch.cuda.is_available()
        hint = " on a CUDA machine: (re)install mamba-ssm (pip install 'futurelat[cuda]') for the fused kernel" if cuda else ""
        _announce(f"mamba scan: torch ({error}){hint}", logging.WARNING if cuda else logging.INFO)
        return "torch"
    if not torch.cuda.is_available():
        if backend == "auto":
            _announce("mamba scan: torch (mamba_ssm installed, but CUDA is not available)")
            return "torch"
        _announce("mamba scan: torch (head.params.backend=mamba_ssm, but CUDA is not available: "
                  "CPU tensors use the torch scan)")
        return "mamba_ssm"
    _announce("mamba scan: mamba_ssm (CUDA kernels; CPU tensors use the torch scan)")
    return "mamba_ssm"


# ---------------------------------------------------------------------------------------------
# Pure-PyTorch chunked SSD scan (Dao & Gu 2024, Listing 1 / mamba_ssm/modules/ssd_minimal.py)
# ---------------------------------------------------------------------------------------------


def _segsum(x: Tensor) -> Tensor:
    """``(..., l)`` → ``(..., l, l)`` with ``out[..., i, j] = sum(x[..., j+1:i+1])`` for ``i >= j``, else ``-inf``."""
    length = x.shape[-1]
    x = x[..., None].expand(*x.shape, length)  # (..., l_src, l_dst) before the cumsum
    strict = torch.tril(torch.ones(length, length, dtype=torch.bool, device=x.device), diagonal=-1)
    x = x.masked_fill(~strict, 0).cumsum(dim=-2)
    causal = torch.tril(torch.ones(length, length, dtype=torch.bool, device=x.device), diagonal=0)
    return x.masked_fill(~causal, float("-inf"))


def ssd_chunk_scan(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Selective SSM ``s_t = exp(dt_t A) s_{t-1} + dt_t x_t B_t^T``, ``y_t = s_t C_t``, chunked.

    Quadratic (attention-like) inside chunks of ``chunk_size`` steps and recurrent across chunks
    (one state update per chunk), so cost is linear in ``l`` and no per-step state is stored for
    the backward pass.

    Args:
        x: ``(b, l, h, p)`` inputs. dt: ``(b, l, h)`` positive step sizes (after softplus).
        A: ``(h,)`` negative decay rates. B, C: ``(b, l, n)`` input/output projections (one group).
        chunk_size: chunk length; sequences are zero-padded to a multiple of it.
        initial_state: ``(b, h, p, n)`` state before step 0, or ``None`` for zeros.

    Returns:
        ``y`` ``(b, l, h, p)`` (without the ``D`` skip) and the final state ``(b, h, p, n)``, float32.
    """
    bsz, length, nheads, _ = x.shape
    chunk = max(1, min(chunk_size, length))
    pad = (-length) % chunk
    x = (x * dt[..., None]).float()
    a = (dt * A).float()  # (b, l, h), log of the per-step decay
    B, C = B.float(), C.float()
    if pad:  # padded steps: zero input, zero log-decay -> the final state is unchanged
        x, a = F.pad(x, (0, 0, 0, 0, 0, pad)), F.pad(a, (0, 0, 0, pad))
        B, C = F.pad(B, (0, 0, 0, pad)), F.pad(C, (0, 0, 0, pad))
    nchunks = x.shape[1] // chunk
    x = x.view(bsz, nchunks, chunk, nheads, -1)  # (b, c, l, h, p)
    B = B.view(bsz, nchunks, chunk, -1)  # (b, c, l, n)
    C = C.view(bsz, nchunks, chunk, -1)
    a = a.view(bsz, nchunks, chunk, nheads).permute(0, 3, 1, 2)  # (b, h, c, l)
    a_cum = a.cumsum(dim=-1)

    # Every einsum below contracts exactly two operands (no large 3-way intermediates).
    # 1. Within each chunk: y = (C B^T ∘ decay mask) x, like causal linear attention.
    scores = torch.einsum("bcln,bcsn->bcls", C, B)  # (b, c, l, s), shared by all heads
    weights = torch.exp(_segsum(a)) * scores.unsqueeze(1)  # (b, h, c, l, s)
    y = torch.einsum("bhcls,bcshp->bclhp", weights, x)

    # 2. State contributed by each chunk on its own (as if it started from zero).
    decay_to_end = torch.exp(a_cum[..., -1:] - a_cum)  # (b, h, c, l)
    b_decayed = decay_to_end.unsqueeze(-1) * B.unsqueeze(1)  # (b, h, c, l, n)
    states = torch.einsum("bhcln,bclhp->bchpn", b_decayed, x)

    # 3. Recurrence across chunk boundaries, one chunk at a time: O(c) state updates. (ssd_minimal
    #    does this with a (c + 1) x (c + 1) decay matrix, which is O(c^2) and dominated the step at
    #    16k tokens; docs/cpu_scan_study.md.)
    #    unbind, not indexing, inside the loop: each index's backward would allocate a gradient the
    #    size of all chunks' states.
    chunk_decay = torch.exp(a_cum[..., -1])[..., None, None].unbind(2)  # c x (b, h, 1, 1): decay across a chunk
    state = torch.zeros_like(states[:, 0]) if initial_state is None else initial_state.float()  # (b, h, p, n)
    entering = []
    for decay, contribution in zip(chunk_decay, states.unbind(1)):
        entering.append(state)
        state = decay * state + contribution
    states, final_state = torch.stack(entering, dim=1), state  # (b, c, h, p, n), (b, h, p, n)

    # 4. Contribution of the state entering each chunk, decayed to each position.
    y_off = torch.einsum("bcln,bchpn->bclhp", C, states)
    y = y + y_off * torch.exp(a_cum).permute(0, 2, 3, 1).unsqueeze(-1)  # decay (b, c, l, h, 1)
    y = y.reshape(bsz, nchunks * chunk, nheads, -1)[:, :length]
    return y, final_state


# ---------------------------------------------------------------------------------------------
# The mixer
# ---------------------------------------------------------------------------------------------


class GatedRMSNorm(nn.Module):
    """``RMSNorm(y * silu(z)) * weight`` over the last axis (mamba_ssm ``RMSNormGated``,
    ``norm_before_gate=False``, one group), computed in float32."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, y: Tensor, z: Tensor) -> Tensor:
        y = y.float() * F.silu(z.float())
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight.float()).to(z.dtype)


def causal_depthwise_conv(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """The mixer's causal depthwise conv over time, channels last: ``x`` ``(b, k - 1 + l, c)`` → ``(b, l, c)``.

    ``x`` starts with the ``k - 1`` left-context inputs; ``weight`` ``(c, 1, k)`` and ``bias`` ``(c,)``
    are an ``nn.Conv1d(c, c, k, groups=c)``'s, and the result equals ``F.conv1d(x.transpose(1, 2),
    weight, bias, groups=c).transpose(1, 2)``: ``y[t] = bias + sum_j weight[:, 0, j] * x[t + j]``.
    Computed as ``k`` shifted multiply-adds: on CPU the depthwise ``conv1d`` and its backward are
    slower at the mixer's shapes (docs/cpu_scan_study.md). :meth:`Mamba2Mixer.step` is the case ``l = 1``.
    """
    k = weight.shape[-1]
    length = x.shape[1] - (k - 1)
    taps = weight[:, 0].t().to(x.dtype)  # (k, c)
    last = x[:, k - 1:]
    y = last * taps[k - 1] if bias is None else torch.addcmul(bias.to(x.dtype), last, taps[k - 1])
    for j in range(k - 1):
        y = torch.addcmul(y, x[:, j:j + length], taps[j])
    return y


@dataclass
class MixerState:
    """Recurrent state of one :class:`Mamba2Mixer` for ``b`` sequences.

    Attributes:
        conv: ``(b, conv_dim, k - 1)`` last inputs of the causal depthwise conv.
        ssm: ``(b, h, p, n)`` SSM state (float32).
    """

    conv: Tensor
    ssm: Tensor


class Mamba2Mixer(nn.Module):
    """Mamba-2 token mixer: ``(b, l, d)`` → ``(b, l, d)``, causal along ``l``.

    ``in_proj`` → causal depthwise conv + SiLU on ``(x, B, C)`` → selective SSM (scalar decay per
    head, Dao & Gu 2024) + ``D`` skip → gated RMSNorm with ``z`` → ``out_proj``. Parameter names
    and shapes follow ``mamba_ssm.modules.mamba2.Mamba2`` (``ngroups = 1``), so one state dict
    runs on both backends.

    Args:
        d_model: ``d``. d_state: ``n``. expand: inner width ``d_inner = expand * d``.
        head_dim: ``p``; ``d_inner`` must be divisible by it (``h = d_inner / p``).
        conv_kernel: ``k`` (>= 1). chunk_size: chunk length of the parallel scan.
        backend: ``"auto" | "mamba_ssm" | "torch"`` (see :func:`resolve_backend`); the resolved
            name is ``self.backend``. With ``"mamba_ssm"``, CUDA tensors use the fused kernel and
            CPU tensors the torch scan (same math).

    Raises:
        ValueError: ``d_inner`` not divisible by ``head_dim``, or ``conv_kernel < 1``.
        ImportError: see :func:`resolve_backend`.
    """

    def __init__(self, d_model: int, *, d_state: int = 32, expand: int = 2, head_dim: int = 32,
                 conv_kernel: int = 4, chunk_size: int = 64, backend: str = "auto",
                 dt_min: float = 1e-3, dt_max: float = 1e-1, a_init_range: tuple[float, float] = (1.0, 16.0)):
        super().__init__()
        d_inner = int(expand * d_model)
        if d_inner % head_dim:
            raise ValueError(f"mamba: expand * d_model = {d_inner} must be divisible by head_dim = {head_dim}")
        if conv_kernel < 1:
            raise ValueError(f"mamba: conv_kernel must be >= 1; got {conv_kernel}")
        self.backend = resolve_backend(backend)
        self.d_model, self.d_inner, self.d_state = d_model, d_inner, d_state
        self.head_dim, self.nheads = head_dim, d_inner // head_dim
        self.conv_kernel, self.chunk_size = conv_kernel, chunk_size
        self.conv_dim = d_inner + 2 * d_state

        self.in_proj = nn.Linear(d_model, 2 * d_inner + 2 * d_state + self.nheads, bias=False)  # z, xBC, dt
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, conv_kernel, groups=self.conv_dim,
                                padding=conv_kernel - 1)
        # dt initialised log-uniformly in [dt_min, dt_max] through the inverse softplus (Gu & Dao 2023).
        dt = torch.exp(torch.rand(self.nheads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=1e-4)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.empty(self.nheads).uniform_(*a_init_range)))
        self.D = nn.Parameter(torch.ones(self.nheads))
        self.norm = GatedRMSNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    # -- pieces shared by the parallel and the recurrent path --------------------------------

    def _split(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        zxbcdt = self.in_proj(u)
        return zxbcdt.split([self.d_inner, self.conv_dim, self.nheads], dim=-1)

    def _gated_norm_out(self, y: Tensor, z: Tensor) -> Tensor:
        return self.out_proj(self.norm(y, z))

    def init_state(self, batch: int, device=None, dtype=None) -> MixerState:
        """Zero state (nothing seen yet) for ``batch`` sequences."""
        device = device or self.in_proj.weight.device
        dtype = dtype or self.in_proj.weight.dtype
        return MixerState(
            conv=torch.zeros(batch, self.conv_dim, self.conv_kernel - 1, device=device, dtype=dtype),
            ssm=torch.zeros(batch, self.nheads, self.head_dim, self.d_state, device=device, dtype=torch.float32),
        )

    # -- parallel path ------------------------------------------------------------------------

    def forward(self, u: Tensor, state: MixerState | None = None) -> tuple[Tensor, MixerState]:
        """Whole sequences at once.

        Args:
            u: ``(b, l, d)`` inputs.
            state: state before ``u[:, 0]`` (e.g. after earlier tokens), or ``None`` for zeros.

        Returns:
            ``(b, l, d)`` outputs and the state after ``u[:, -1]`` (for :meth:`step`).
        """
        bsz, length, _ = u.shape
        z, xbc, dt = self._split(u)
        # Causal depthwise conv with the previous inputs (zeros at the start) as left context.
        prev = state.conv if state is not None else u.new_zeros(bsz, self.conv_dim, self.conv_kernel - 1)
        xbc = torch.cat([prev.to(xbc.dtype).transpose(1, 2), xbc], dim=1)  # (b, k-1+l, conv_dim)
        new_conv = xbc[:, length:].transpose(1, 2)  # (b, conv_dim, k-1)
        xbc = F.silu(causal_depthwise_conv(xbc, self.conv1d.weight, self.conv1d.bias))
        x, B, C = xbc.split([self.d_inner, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(dt.float() + self.dt_bias.float())  # (b, l, h)
        A = -torch.exp(self.A_log.float())
        x = x.reshape(bsz, length, self.nheads, self.head_dim)
        init = state.ssm if state is not None else None
        if self.backend == "mamba_ssm" and u.is_cuda:
            y, ssm = _import_mamba_ssm_scan()(
                x.contiguous(), dt.contiguous(), A, B.unsqueeze(2).contiguous(), C.unsqueeze(2).contiguous(),
                self.chunk_size, initial_states=init, return_final_states=True)
        else:
            y, ssm = ssd_chunk_scan(x, dt, A, B, C, self.chunk_size, initial_state=init)
        y = y.to(x.dtype) + x * self.D[:, None].to(x.dtype)
        out = self._gated_norm_out(y.reshape(bsz, length, self.d_inner), z)
        return out, MixerState(conv=new_conv, ssm=ssm.float())

    # -- recurrent path -----------------------------------------------------------------------

    def step(self, u: Tensor, state: MixerState) -> tuple[Tensor, MixerState]:
        """One token per sequence at constant cost: ``u`` ``(b, d)`` → ``(b, d)``, new state.

        Matches :meth:`forward` on the concatenated sequence up to float error.
        """
        bsz = u.shape[0]
        z, xbc, dt = self._split(u)
        window = torch.cat([state.conv, xbc.unsqueeze(-1)], dim=-1)  # (b, conv_dim, k)
        xbc = F.silu(causal_depthwise_conv(window.transpose(1, 2), self.conv1d.weight, self.conv1d.bias)[:, 0])
        x, B, C = xbc.split([self.d_inner, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(dt.float() + self.dt_bias.float())  # (b, h)
        A = -torch.exp(self.A_log.float())
        x = x.reshape(bsz, self.nheads, self.head_dim)
        # A new state tensor (the caller's is left as it was: a maskgit pass peeks), then the input's outer
        # product added in place: one (b, h, p, n) allocation instead of three.
        ssm = state.ssm * torch.exp(dt * A)[:, :, None, None]
        ssm.addcmul_((x.float() * dt[..., None])[..., None], B.float()[:, None, None, :])
        y = torch.einsum("bhpn,bn->bhp", ssm, C.float()).to(x.dtype) + x * self.D[:, None].to(x.dtype)
        out = self._gated_norm_out(y.reshape(bsz, self.d_inner), z)
        return out, MixerState(conv=window[:, :, 1:], ssm=ssm)
