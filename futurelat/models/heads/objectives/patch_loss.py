"""The frame-ordered code prior's loss in its readout's patch order, with sampled static patches.

Shape notation as :mod:`~futurelat.models.heads.objectives.code_prior`: ``B`` batch, ``T`` latent
frames, ``N = h * w`` codes per frame, ``K`` codebook size, ``p`` patch side, ``M = N / p**2``
positions per frame, ``d`` trunk width.

The logits stay in the readout's patch order and the targets are patchified instead: the same mean
over the same codes as raster logits against raster targets, without reordering the ``(B, T-1, N, K)``
logits, the largest tensor of a step.

With ``static_keep = r < 1`` (training): a position is *static* when its patch of the next frame holds
the same codes as in its own frame (the background; on Moving MNIST about 70 % of them). Every moving
position is scored and a random share ``r`` of the static ones, each weighted ``1 / r``, so the loss,
its gradient and the accuracy are unbiased estimates of the full ones (importance sampling), at about
``moving + r * static`` of the readout's and the cross-entropy's cost.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import torch
from torch import Tensor

from futurelat.models.heads.patches import patchify
from futurelat.models.heads.sampling import code_cross_entropy

if TYPE_CHECKING:
    from futurelat.models.heads.objectives.motion_copy import MotionCopy


def check_static_keep(static_keep: float, ordering: str, frame_decoding: str, unroll_frames: int) -> None:
    """Raise ``ValueError`` naming ``head.params.static_keep`` unless it lies in ``(0, 1]`` and, below 1,
    the prior is frame-ordered with independent decoding and no unrolling (whose losses are not
    :func:`patch_order_loss`)."""
    if not 0.0 < static_keep <= 1.0:
        raise ValueError(f"head.params.static_keep must lie in (0, 1]; got {static_keep}")
    if static_keep < 1 and (ordering != "frame" or frame_decoding != "independent" or unroll_frames > 0):
        raise ValueError("head.params.static_keep < 1 scores a sample of each next frame's static patches and "
                         "needs head.params.ordering=frame with frame_decoding=independent and unroll_frames=0; "
                         f"got ordering={ordering!r}, frame_decoding={frame_decoding!r}, "
                         f"unroll_frames={unroll_frames}; set head.params.static_keep=1 to score every code")


def patch_order_loss(readout: Callable[[Tensor], Tensor], x: Tensor, codes: Tensor, grid: tuple[int, int],
                     patch_size: int, num_codes: int, static_keep: float = 1.0, copy: MotionCopy | None = None,
                     inputs: Tensor | None = None) -> dict[str, Tensor]:
    """Trunk features ``x`` ``(B, (T-1) * M, d)`` of frames ``0 .. T-2`` against frames ``1 ..`` of the
    clean ``codes`` ``(B, T, N)``.

    Args:
        readout: features ``(..., d)`` → logits ``(..., p*p*K)`` in patch order.
        grid: ``(h, w)``; patch_size: ``p``; num_codes: ``K``.
        static_keep: share in ``(0, 1]`` of static positions scored (1: every position).
        copy: the prior's :class:`~futurelat.models.heads.objectives.motion_copy.MotionCopy`, or None: each
            next code's likelihood is then its mixture's, copying from ``inputs`` ``(B, T, N)`` (the codes the
            trunk read, ``codes`` after input noise).

    Returns:
        :func:`~futurelat.models.heads.sampling.code_cross_entropy`'s ``loss``, ``accuracy`` and
        ``bits_per_token``; with ``static_keep < 1`` also ``scored_share``, the share of positions scored.
    """
    patches = patchify(codes[..., None], grid, patch_size)  # (B, T, M, p*p)
    targets = patches[:, 1:]  # (B, T-1, M, p*p)
    x = x.view(*targets.shape[:3], x.shape[-1])
    if static_keep >= 1 and copy is None:
        return code_cross_entropy(readout(x).view(*targets.shape, num_codes), targets)
    static = (targets == patches[:, :-1]).all(-1)  # (B, T-1, M): the patch keeps its codes
    keep = ~static | (torch.rand(static.shape, device=static.device) < static_keep)
    weight = torch.where(static[keep], 1.0 / static_keep, 1.0)[:, None]  # (S, 1)
    logits = readout(x[keep]).view(-1, targets.shape[-1], num_codes)  # (S, p*p, K)
    if copy is None:
        out = code_cross_entropy(logits, targets[keep], weight, count=targets.numel())
    else:
        nll, hit = copy.loss_terms(logits, x[keep], copy.sources(inputs[:, :-1])[keep], targets[keep])
        loss = (nll * weight).sum() / targets.numel()
        out = {"loss": loss, "accuracy": (hit * weight).sum() / targets.numel(),
               "bits_per_token": loss.detach() / math.log(2)}
    if static_keep < 1:
        out["scored_share"] = keep.float().mean()
    return out
