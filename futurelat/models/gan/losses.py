"""Adversarial losses: the discriminator's and the generator's (hinge, non-saturating), the LeCam
regulariser with its logit EMAs, and VQGAN's adaptive generator weight.

Logits are any-shaped tensors of discriminator outputs (patch logits ``(B, T, h, w)``, or one per
clip); every loss is a mean over all of them. The conventions are taming-transformers' (Esser et al.
2021, ``vqperceptual.py``), also used by Open-MAGVIT2: the discriminator losses carry a factor 1/2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def discriminator_loss(kind: str, logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """The discriminator's loss, a scalar.

    - ``hinge``: ``(mean(relu(1 - real)) + mean(relu(1 + fake))) / 2``;
    - ``non_saturating``: ``(mean(softplus(-real)) + mean(softplus(fake))) / 2``, the binary
      cross-entropy of real → 1, fake → 0.

    Raises:
        ValueError: an unknown ``kind``.
    """
    if kind == "hinge":
        return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())
    if kind == "non_saturating":
        return 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())
    raise ValueError(f"unknown discriminator loss {kind!r}; valid: hinge | non_saturating")


def generator_loss(kind: str, logits_fake: Tensor) -> Tensor:
    """The generator's adversarial loss on the discriminator's logits of its outputs, a scalar.

    - ``hinge``: ``-mean(fake)``;
    - ``non_saturating``: ``mean(softplus(-fake))`` = ``-mean(log sigmoid(fake))`` (Goodfellow et al. 2014).

    Raises:
        ValueError: an unknown ``kind``.
    """
    if kind == "hinge":
        return -logits_fake.mean()
    if kind == "non_saturating":
        return F.softplus(-logits_fake).mean()
    raise ValueError(f"unknown generator loss {kind!r}; valid: hinge | non_saturating")


class LeCam(nn.Module):
    """LeCam regularisation (Tseng et al. 2021, "Regularizing Generative Adversarial Networks under
    Limited Data"): ``mean(relu(real - ema_fake)²) + mean(relu(ema_real - fake)²)``, where ``ema_*`` are
    exponential moving averages of the mean real / fake logits.

    The two EMAs are buffers (``ema_real``, ``ema_fake``; start at 0 as in the paper's code), so they
    travel with the discriminator's state dict into checkpoints. :meth:`penalty` reads them and
    :meth:`update` moves them; the trainer updates them once per optimizer step with the rank-mean
    logits (the same on every rank), after the step's penalty was computed.
    """

    def __init__(self, decay: float = 0.999):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"LeCam decay must be in [0, 1); got {decay}")
        self.decay = decay
        self.register_buffer("ema_real", torch.zeros(()))
        self.register_buffer("ema_fake", torch.zeros(()))

    def penalty(self, logits_real: Tensor, logits_fake: Tensor) -> Tensor:
        """The regulariser on this batch's logits, a scalar (float32)."""
        real, fake = logits_real.float(), logits_fake.float()
        return F.relu(real - self.ema_fake).square().mean() + F.relu(self.ema_real - fake).square().mean()

    @torch.no_grad()
    def update(self, mean_real: float | Tensor, mean_fake: float | Tensor) -> None:
        """``ema ← decay · ema + (1 - decay) · mean`` for both EMAs."""
        self.ema_real.mul_(self.decay).add_(torch.as_tensor(mean_real, dtype=self.ema_real.dtype), alpha=1 - self.decay)
        self.ema_fake.mul_(self.decay).add_(torch.as_tensor(mean_fake, dtype=self.ema_fake.dtype), alpha=1 - self.decay)


def grad_norm_at(loss: Tensor, weight: Tensor) -> Tensor:
    """``‖∂loss/∂weight‖₂`` (float32, detached), keeping the graph for the backward pass that follows.

    Runs ``torch.autograd.grad``, which returns the gradient instead of accumulating it into
    ``weight.grad``: no ``.grad`` changes and no DistributedDataParallel hook fires (they fire on
    accumulation), so it is safe inside a DDP step before its ``backward``.
    """
    (grad,) = torch.autograd.grad(loss, weight, retain_graph=True)
    return torch.linalg.vector_norm(grad.float()).detach()


def adaptive_weight(rec_norm: Tensor, adv_norm: Tensor, max_weight: float = 1.0e4, eps: float = 1.0e-4) -> Tensor:
    """VQGAN's adaptive weight of the adversarial loss (Esser et al. 2021, eq. 7):
    ``clamp(‖∇_L rec‖ / (‖∇_L adv‖ + eps), 0, max_weight)``, where ``∇_L`` are the gradients of the
    reconstruction and adversarial losses at the decoder's last layer (:func:`grad_norm_at`).
    Detached; multiply it by ``generator_weight``."""
    return (rec_norm / (adv_norm + eps)).clamp(0.0, max_weight).detach()
