"""MaskGIT's whole-frame decoding for the frame-ordered code priors: the training mask and the
refinement passes that fill one future frame (Chang et al. 2022, arXiv:2202.04200; MaskViT, Gupta et
al. 2022, arXiv:2206.11894). The prior's side (embeddings, the loss, the rollout over frames) is in
:mod:`futurelat.models.heads.objectives.code_prior`.

Shape notation: ``B`` batch, ``N`` codes per frame, ``K`` codebook size, ``M`` tokens per frame, ``d`` width.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Callable

import torch
from torch import Tensor

from futurelat.models.heads.sampling import draw_options, sample_codes


def cosine_mask(shape: tuple[int, ...] | torch.Size, device: torch.device) -> Tensor:
    """MaskGIT's training mask ``(..., N)`` bool (True = masked): per leading index a share
    ``cos(pi/2 * u)``, ``u ~ U(0, 1)``, of the ``N`` positions, at least one, chosen uniformly."""
    *lead, n = shape
    share = torch.cos(math.pi / 2 * torch.rand(*lead, 1, device=device))
    count = torch.ceil(share * n).clamp_(1, n)
    rank = torch.rand(*lead, n, device=device).argsort(-1).argsort(-1)
    return rank < count


def fill_frame(prior: Any, features: Callable[[Tensor], Tensor], shape: torch.Size, options: Mapping[str, Any],
               generator: torch.Generator | None) -> Tensor:
    """One future frame ``(B, N)`` of a :class:`~futurelat.models.heads.objectives.code_prior.CodePrior`
    ``prior``: from all masked, ``options["steps"]`` passes of draw-and-keep-the-most-confident.

    ``features(visible)`` maps the visible codes ``(B, N)`` (``K`` = masked) to trunk features
    ``(B, M, d)``; ``options`` are validated sampling options
    (:func:`~futurelat.models.heads.sampling.sampling_options`). Returns codes int64 in ``[0, K)``.
    """
    n = shape[-1]
    steps, choice_temperature = options["steps"], options["choice_temperature"]
    visible = torch.full(shape, prior.num_codes, dtype=torch.long, device=prior.code_embed.weight.device)
    masked = torch.ones(shape, dtype=torch.bool, device=visible.device)
    draw = draw_options(options)
    for k in range(steps):
        logits = prior.frame_logits(features(visible))[:, 0].float()  # (B, N, K)
        drawn = sample_codes(logits, **draw, generator=generator)
        confidence = torch.log_softmax(logits, -1).gather(-1, drawn[..., None])[..., 0]  # (B, N)
        noise_scale = choice_temperature * (1.0 - (k + 1) / steps)
        if noise_scale > 0 and not options["greedy"]:
            uniform = torch.rand(shape, device=logits.device, generator=generator).clamp_(1e-20, 1.0)
            confidence = confidence - noise_scale * torch.log(-torch.log(uniform))  # + scale * Gumbel
        confidence = confidence.masked_fill(~masked, float("inf"))  # fixed codes stay fixed
        left = masked.sum(-1)  # (B,)
        keep_masked = torch.minimum(torch.full_like(left, math.floor(n * math.cos(math.pi / 2 * (k + 1) / steps))),
                                    (left - 1).clamp(min=0))
        rank = confidence.argsort(-1).argsort(-1)  # 0 = least confident
        still = rank < keep_masked[:, None]
        visible = torch.where(masked & ~still, drawn, visible)
        masked = still
    return visible
