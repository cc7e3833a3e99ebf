"""Per-channel standardization of latents, fitted once; what a continuous head predicts (``TARGETS``).

Shape notation: ``D`` latent channels; ``...`` any leading axes.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


#: What a continuous head predicts (``head.params.target``): the future latents themselves, or their
#: change from the last context frame (most of a frame's latents persist into the next one).
TARGETS = ("absolute", "residual")


class LatentStandardizer(nn.Module):
    """Per-channel standardization of latents ``(..., D)``, fitted once on the first training batch.

    A backbone's latents have whatever scale its training gave them (VQ-VAE codebook vectors,
    V-JEPA 2 features...). Continuous heads regress or denoise them, which works best at unit
    scale (a flow head's noise is ``N(0, I)``), so the head standardizes inputs and targets with
    a mean and standard deviation per channel and un-standardizes its predictions. The
    statistics are estimated from the first batch the head sees in training mode and then frozen
    (under DDP, from the moments averaged over all ranks' first batches, so every rank agrees);
    they are buffers, so they travel with the head's ``state_dict`` (checkpoints). Before that
    batch they are the identity (mean 0, std 1).

    Args:
        dim: ``D``.
        floor: a channel's standard deviation is floored at ``floor`` times the mean channel std
            (and at ``1e-6``), so near-constant channels are not blown up.
    """

    def __init__(self, dim: int, floor: float = 0.01):
        super().__init__()
        self.floor = floor
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit_once(self, latents: Tensor) -> None:
        """Estimate the statistics from ``latents`` ``(..., D)`` unless already fitted (training only)."""
        if bool(self.fitted) or not self.training:
            return
        flat = latents.detach().reshape(-1, latents.shape[-1]).double()
        moments = torch.stack([flat.mean(0), flat.square().mean(0)])  # (2, D): E[x], E[x^2]
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(moments)
            moments /= dist.get_world_size()
        mean, square = moments
        self.mean.copy_(mean)
        std = (square - mean.square()).clamp_min(0).sqrt()
        self.std.copy_(torch.maximum(std, (self.floor * std.mean()).clamp_min(1e-6)))
        self.fitted.fill_(True)

    def forward(self, latents: Tensor) -> Tensor:
        """``(..., D)`` → standardized ``(..., D)``."""
        return (latents - self.mean) / self.std

    def inverse(self, latents: Tensor) -> Tensor:
        """Standardized ``(..., D)`` → backbone scale ``(..., D)``."""
        return latents * self.std + self.mean
