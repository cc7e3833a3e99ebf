"""Motion copy: the frame-ordered code prior's next frame as a mixture of its own distribution and a
shifted copy of the frame before.

Shape notation as :mod:`~futurelat.models.heads.objectives.code_prior`: ``B`` batch, ``T`` latent
frames, ``N = h * w`` codes per frame on an ``(h, w)`` grid, ``K`` codebook size, ``p`` patch side,
``M = N / p**2`` positions per frame, ``d`` trunk width; ``R`` the copy radius in codes and
``O = (2R + 1)**2`` the source offsets ``(dy, dx)`` in ``[-R, R]**2``.

A moving digit's next frame is mostly its last frame, displaced. A prior that must redraw every code
of it from a ``d``-wide feature blurs the shape within a few frames; one that can *copy* keeps it.
As CDNA (Finn et al. 2016, "Unsupervised learning for physical interaction through video
prediction", arXiv:1605.07157) predicts a frame by moving the pixels of the last one with a few
predicted kernels, and as a pointer-generator network (See et al. 2017, arXiv:1704.04368) mixes a
generated word with a copied one, each position ``m`` of the next frame predicts, from its trunk
feature, a distribution ``pi_m`` over ``O`` source offsets and a gate ``g`` per code slot, and the
prior's distribution of the code at grid cell ``n`` in position ``m`` is::

    p(k) = g * softmax(logits)(k) + (1 - g) * sum_o pi_m(o) * q(n + o)(k)

where ``q`` is the previous frame's code distribution (one-hot for a frame of true or drawn codes,
the prior's own distribution in a mean-field rollout), over the offsets whose source lies inside the
grid (``pi_m`` renormalized over them, so ``p`` sums to 1 at the borders too). Training scores
``-log p(target)``; a rollout draws from ``p`` or feeds its expectation back. The generating half
stays, for what the last frame does not hold (a digit coming out from behind another, a bounce).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from futurelat.models.heads.patches import patchify, unpatchify

#: bytes of previous frames that :meth:`MotionCopy.copied` moves at a time (a cache-sized block)
_CHUNK_BYTES = 1 << 22


def check_motion_copy(radius: int, ordering: str, frame_decoding: str, unroll_frames: int,
                      scheduled_sampling: float) -> None:
    """Raise ``ValueError`` naming ``head.params.motion_copy`` when it is on (``radius != 0``) for a prior that is
    not frame-ordered with independent decoding, no unrolling and no scheduled sampling."""
    if radius and (ordering != "frame" or frame_decoding != "independent" or unroll_frames > 0
                   or scheduled_sampling > 0):
        raise ValueError("head.params.motion_copy mixes each next frame with a shifted copy of the frame before and "
                         "needs head.params.ordering=frame with frame_decoding=independent, unroll_frames=0 and "
                         f"scheduled_sampling=0; got ordering={ordering!r}, frame_decoding={frame_decoding!r}, "
                         f"unroll_frames={unroll_frames}, scheduled_sampling={scheduled_sampling}")


class MotionCopy(nn.Module):
    """Per-position offset distributions and per-code gates from trunk features; see the module docstring.

    Args:
        width: ``d``. radius: ``R >= 1``, the largest source offset in codes along each axis.
        grid: ``(h, w)``. patch_size: ``p``. num_codes: ``K``.

    Raises:
        ValueError: ``radius < 1``.
    """

    def __init__(self, width: int, radius: int, grid: tuple[int, int], patch_size: int, num_codes: int):
        super().__init__()
        if radius < 1:
            raise ValueError(f"head.params.motion_copy must be >= 1 (a radius in codes) or 0 (off); got {radius}")
        self.radius, self.grid, self.patch_size, self.num_codes = radius, tuple(grid), patch_size, num_codes
        self.offsets = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
        self.to_weights = nn.Linear(width, len(self.offsets) + patch_size * patch_size)

    def weights(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Features ``(..., d)`` of positions → the offsets' logits ``(..., O)`` (``pi`` is their softmax over the
        offsets inside the grid), and ``log g``, ``log (1 - g)`` ``(..., p*p)`` of the gates; all float32."""
        out = self.to_weights(x).float()
        num_offsets = len(self.offsets)
        gate = out[..., num_offsets:]
        return out[..., :num_offsets], F.logsigmoid(gate), F.logsigmoid(-gate)

    def sources(self, codes: Tensor) -> Tensor:
        """Codes ``(B, T, N)`` → ``(B, T, M, p*p, O)``: for each code slot of each position, the code at each
        source offset (``-1`` outside the grid), in the readout's patch order."""
        (h, w), r = self.grid, self.radius
        padded = F.pad(codes.view(*codes.shape[:-1], h, w), (r, r, r, r), value=-1)
        shifted = torch.stack([padded[..., r + dy:r + dy + h, r + dx:r + dx + w] for dy, dx in self.offsets], -1)
        patches = patchify(shifted.flatten(-3, -2), self.grid, self.patch_size)  # (B, T, M, p*p*O)
        return patches.unflatten(-1, (self.patch_size ** 2, len(self.offsets)))

    def inside(self, device: torch.device | None = None) -> Tensor:
        """``(h, w, O)`` bool: whether each cell's source at each offset lies inside the grid."""
        (h, w), r = self.grid, self.radius
        rows, cols = torch.arange(h, device=device)[:, None, None], torch.arange(w, device=device)[None, :, None]
        dy, dx = torch.tensor(self.offsets, device=device).T
        return (rows + dy >= 0) & (rows + dy < h) & (cols + dx >= 0) & (cols + dx < w)

    def copied(self, prev: Tensor, offset_logits: Tensor) -> Tensor:
        """The copy distribution: the previous frame's code distributions ``prev`` ``(B, N, K)`` moved by the
        offsets of the positions they land in (logits ``(B, M, O)``, softmax over each cell's sources inside
        the grid) → ``(B, N, K)`` float32 (rows sum to 1)."""
        (h, w), r, p = self.grid, self.radius, self.patch_size
        num_offsets = len(self.offsets)
        per_slot = offset_logits[..., None, :].expand(*offset_logits.shape[:-1], p * p, num_offsets).flatten(-2)
        grid_logits = unpatchify(per_slot, self.grid, p).view(-1, h, w, num_offsets)  # (B, h, w, O)
        pi = torch.softmax(grid_logits.masked_fill(~self.inside(prev.device), float("-inf")), -1)
        padded = F.pad(prev.float().view(-1, h, w, prev.shape[-1]), (0, 0, r, r, r, r))
        out = torch.zeros_like(padded[:, :h, :w])
        # a few frames at a time, so that the O passes over them stay in the CPU's cache
        chunk = max(1, _CHUNK_BYTES // (padded[0].numel() * padded.element_size()))
        for start in range(0, out.shape[0], chunk):
            acc, src, weight = out[start:start + chunk], padded[start:start + chunk], pi[start:start + chunk]
            for i, (dy, dx) in enumerate(self.offsets):
                acc.addcmul_(weight[..., i, None], src[:, r + dy:r + dy + h, r + dx:r + dx + w])
        return out.view(prev.shape[0], h * w, -1)

    def log_probs(self, logits: Tensor, x: Tensor, prev: Tensor) -> Tensor:
        """One next frame: raster ``logits`` ``(B, N, K)`` of the generating half, trunk features ``x``
        ``(B, M, d)`` and the previous frame's code distributions ``prev`` ``(B, N, K)`` → the mixture's
        log-probabilities ``(B, N, K)`` float32 (module docstring)."""
        offset_logits, log_gate, _ = self.weights(x)
        gate = unpatchify(log_gate, self.grid, self.patch_size).exp()  # (B, N, 1)
        mixed = gate * torch.softmax(logits.float(), -1) + (1 - gate) * self.copied(prev, offset_logits)
        return mixed.clamp_min(1e-30).log()

    def loss_terms(self, gen_logits: Tensor, x: Tensor, sources: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Training, on ``S`` scored positions: generating logits ``(S, p*p, K)``, features ``(S, d)``, source codes
        ``(S, p*p, O)`` (:meth:`sources` of the input frames) and target codes ``(S, p*p)`` → the mixture's
        negative log-likelihood of each target ``(S, p*p)`` and whether the mixture's most likely code is the
        target ``(S, p*p)`` bool (no gradient)."""
        offset_logits, log_gate, log_rest = self.weights(x)
        gen_logp = torch.log_softmax(gen_logits.float(), -1)
        weight = torch.softmax(offset_logits[:, None, :].masked_fill(sources < 0, float("-inf")), -1)  # (S, p*p, O)
        copy_p = ((sources == targets[..., None]) * weight).sum(-1)  # (S, p*p)
        logp = torch.logaddexp(log_gate + gen_logp.gather(-1, targets[..., None])[..., 0],
                               log_rest + copy_p.clamp_min(1e-30).log())
        with torch.no_grad():
            copy = torch.zeros_like(gen_logp).scatter_add_(-1, sources.clamp_min(0), weight.detach())
            mixed = log_gate.exp()[..., None] * gen_logp.exp() + log_rest.exp()[..., None] * copy
            hit = mixed.argmax(-1) == targets
        return -logp, hit
