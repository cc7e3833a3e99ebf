"""Decoded pixel loss: a regression head's predicted latents through the frozen backbone decoder.

A latent-space loss (MSE on standardized latents) is not the pixel MSE that evaluation scores: a
latent error on a digit's stroke costs far more pixels than the same error on the background, and
a discrete backbone snaps predictions to its codebook before decoding. This optional term decodes
``frames`` randomly chosen predicted frames of each clip with the frozen decoder and adds
``weight * MSE(decoded prediction, decoded truth)`` to the loss. The decoder is the backbone's
:meth:`~futurelat.models.base.Backbone.decode_latents`: a VQ-VAE snaps to its codebook with the
straight-through estimator (van den Oord et al. 2017, arXiv:1711.00937), so the loss sees the frames
evaluation will decode while gradients reach the continuous prediction. The target is the decoded
true latents (the tokenized truth), so the term works on latent caches too, which hold no pixels.

The builder (:func:`~futurelat.models.latent_video_model.build_model`) attaches the decoder; a
backbone without a pixel decoder (V-JEPA 2) is refused there.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def check_pixel_loss(weight: float, frames: int, regression: bool) -> None:
    """Raise ``ValueError`` naming ``head.params.pixel_loss_*`` for a bad setting."""
    if not weight >= 0:
        raise ValueError(f"head.params.pixel_loss_weight must be >= 0 (0 turns it off); got {weight!r}")
    if not (isinstance(frames, int) and frames >= 1):
        raise ValueError(f"head.params.pixel_loss_frames must be an integer >= 1; got {frames!r}")
    if weight > 0 and not regression:
        raise ValueError("head.params.pixel_loss_weight is for the regression objective (it decodes predicted "
                         "latents); a code objective's cross-entropy has no latents to decode")


class DecodedPixelLoss:
    """``weight * MSE`` between decoded predicted and decoded true latent frames.

    Not an ``nn.Module``: it holds no parameters, and the decoder it calls belongs to the (frozen)
    backbone, so it must not enter the head's ``state_dict``.

    Args:
        weight: multiplies the per-pixel MSE of frames in [0, 1]; choose it so the weighted term is
            on the scale of the latent loss. ``0`` is off.
        frames: predicted frames per clip that are decoded (distinct, drawn at random each step;
            all of them when a clip has fewer). The decoder's cost grows with it.
    """

    def __init__(self, weight: float = 0.0, frames: int = 2):
        self.weight, self.frames = float(weight), int(frames)
        #: ``latents (B, T, N, D) -> frames (B, T, C, H, W)``, differentiable; set by the builder.
        self.decode: Callable[[Tensor], Tensor] | None = None

    @property
    def active(self) -> bool:
        return self.weight > 0

    def add_to(self, loss: Tensor, stats: dict[str, Tensor], pred: Tensor, target: Tensor,
               inverse: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """``loss + weight * pixel MSE`` and ``stats["pixel_mse"]`` (detached) when active; else ``loss``.

        Arguments as for :meth:`__call__`; a head calls this once on its regression loss.
        """
        if not self.active:
            return loss
        pixel_mse = self(pred, target, inverse)
        stats["pixel_mse"] = pixel_mse.detach()
        return loss + self.weight * pixel_mse

    def __call__(self, pred: Tensor, target: Tensor, inverse: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """Pixel MSE (scalar, >= 0, per pixel of frames in [0, 1]), unweighted.

        Args:
            pred: predicted latents ``(B, T, N, D)``, in the backbone's units, or standardized when
                ``inverse`` is given.
            target: true latents ``(B, T, N, D)``, in the backbone's units.
            inverse: maps the chosen frames of ``pred`` to the backbone's units (a head's
                un-standardization), applied after the choice so the other frames cost nothing.

        Raises:
            RuntimeError: no decoder was attached (the head was built outside ``build_model``).
        """
        if self.decode is None:
            raise RuntimeError("head.params.pixel_loss_weight > 0 but no decoder is attached: build the model "
                               "with futurelat.models.latent_video_model.build_model, which attaches the "
                               "backbone's decode_latents")
        b, t = pred.shape[:2]
        k = min(self.frames, t)
        order = torch.rand(b, t, device=pred.device).argsort(dim=1)[:, :k]  # (B, k) distinct frames
        index = order[:, :, None, None].expand(-1, -1, *pred.shape[2:])
        with torch.no_grad():
            truth = self.decode(target.gather(1, index).to(pred.dtype)).clamp(0, 1)
        chosen = pred.gather(1, index)
        frames = self.decode(inverse(chosen) if inverse is not None else chosen)
        return F.mse_loss(frames.float(), truth.float())
