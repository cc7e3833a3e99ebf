"""Decoded pixel loss: a regression head's predicted latents through the frozen backbone decoder.

A latent-space loss (MSE on standardized latents) is not the pixel MSE that evaluation scores: a
latent error on a digit's stroke costs far more pixels than the same error on the background, and
a discrete backbone snaps predictions to its codebook before decoding. This optional term decodes
``frames`` randomly chosen predicted frames of each clip with the frozen decoder and adds
``weight * MSE(decoded prediction, decoded truth)`` to the loss, and optionally
``ssim_weight * (1 - SSIM)`` of the same frames (the MSE + SSIM mix of Zhao et al. 2017, "Loss
Functions for Image Restoration with Neural Networks", arXiv:1511.08861). MSE alone is minimized by
the per-pixel mean, which paints faint grey wherever a digit might be; SSIM's luminance and contrast
terms punish exactly that haze on a black background. The decoder is the backbone's
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

from futurelat.evaluation.metrics import frame_ssim_fast


def check_pixel_loss(weight: float, frames: int, regression: bool, ssim_weight: float = 0.0) -> None:
    """Raise ``ValueError`` naming ``head.params.pixel_loss_*`` / ``pixel_ssim_weight`` for a bad setting."""
    if not weight >= 0:
        raise ValueError(f"head.params.pixel_loss_weight must be >= 0 (0 turns it off); got {weight!r}")
    if not ssim_weight >= 0:
        raise ValueError(f"head.params.pixel_ssim_weight must be >= 0 (0 turns it off); got {ssim_weight!r}")
    if not (isinstance(frames, int) and frames >= 1):
        raise ValueError(f"head.params.pixel_loss_frames must be an integer >= 1; got {frames!r}")
    if (weight > 0 or ssim_weight > 0) and not regression:
        raise ValueError("head.params.pixel_loss_weight is for the regression objective, as is pixel_ssim_weight "
                         "(they decode predicted latents); a code objective's cross-entropy has no latents to decode")


class DecodedPixelLoss:
    """``weight * MSE + ssim_weight * (1 - SSIM)`` between decoded predicted and decoded true latent frames.

    Not an ``nn.Module``: it holds no parameters, and the decoder it calls belongs to the (frozen)
    backbone, so it must not enter the head's ``state_dict``.

    Args:
        weight: multiplies the per-pixel MSE of frames in [0, 1]; choose it so the weighted term is
            on the scale of the latent loss. ``0`` is off.
        frames: predicted frames per clip that are decoded (distinct, drawn at random each step;
            all of them when a clip has fewer). The decoder's cost grows with it.
        ssim_weight: multiplies ``1 - SSIM`` (in [0, 2]) of the same decoded frames, with the
            evaluation's SSIM (:func:`~futurelat.evaluation.metrics.frame_ssim_fast`, equal to
            :func:`~futurelat.evaluation.metrics.frame_ssim`). ``0`` is off.
    """

    def __init__(self, weight: float = 0.0, frames: int = 2, ssim_weight: float = 0.0):
        self.weight, self.frames, self.ssim_weight = float(weight), int(frames), float(ssim_weight)
        #: ``latents (B, T, N, D) -> frames (B, T, C, H, W)``, differentiable; set by the builder.
        self.decode: Callable[[Tensor], Tensor] | None = None

    @property
    def active(self) -> bool:
        return self.weight > 0 or self.ssim_weight > 0

    def add_to(self, loss: Tensor, stats: dict[str, Tensor], pred: Tensor, target: Tensor,
               inverse: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """``loss + weight * pixel MSE + ssim_weight * (1 - SSIM)`` when active; else ``loss``.

        Puts ``stats["pixel_mse"]`` and ``stats["pixel_ssim"]`` (detached) in ``stats``. Arguments as
        for :meth:`frames_pair`; a head calls this once on its regression loss.
        """
        if not self.active:
            return loss
        frames, truth = self.frames_pair(pred, target, inverse)
        pixel_mse = F.mse_loss(frames, truth)
        stats["pixel_mse"] = pixel_mse.detach()
        loss = loss + self.weight * pixel_mse
        if self.ssim_weight > 0:
            ssim = frame_ssim_fast(frames, truth).mean()
            stats["pixel_ssim"] = ssim.detach()
            loss = loss + self.ssim_weight * (1.0 - ssim)
        return loss

    def __call__(self, pred: Tensor, target: Tensor, inverse: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """Pixel MSE (scalar, >= 0, per pixel of frames in [0, 1]), unweighted; arguments as for :meth:`frames_pair`."""
        return F.mse_loss(*self.frames_pair(pred, target, inverse))

    def frames_pair(self, pred: Tensor, target: Tensor,
                    inverse: Callable[[Tensor], Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """Decoded predicted and true frames, float32 ``(B, k, C, H, W)`` in [0, 1] for the truth.

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
            raise RuntimeError("head.params.pixel_loss_weight or pixel_ssim_weight > 0 but no decoder is attached: "
                               "build the model with futurelat.models.latent_video_model.build_model, which "
                               "attaches the backbone's decode_latents")
        b, t = pred.shape[:2]
        k = min(self.frames, t)
        order = torch.rand(b, t, device=pred.device).argsort(dim=1)[:, :k]  # (B, k) distinct frames
        index = order[:, :, None, None].expand(-1, -1, *pred.shape[2:])
        with torch.no_grad():
            truth = self.decode(target.gather(1, index).to(pred.dtype)).clamp(0, 1)
        chosen = pred.gather(1, index)
        frames = self.decode(inverse(chosen) if inverse is not None else chosen)
        return frames.float(), truth.float()
