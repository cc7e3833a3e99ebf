"""Latent-space prediction metrics: L1, MSE and cosine similarity per latent frame.

For backbones without a pixel decoder (V-JEPA 2) a prediction can only be scored against the
encoder's own latents of the true future. Shape notation: ``B`` sequences, ``T`` latent frames,
``N`` tokens per latent frame, ``D`` latent channels; latents are ``(B, T, N, D)`` float in the
backbone's own (unnormalized) scale.

- **l1**: absolute error AVERAGED over the ``N·D`` values of a latent frame (not summed, unlike
  the pixel MAE of :mod:`futurelat.evaluation.metrics`), so it does not grow with the token grid.
  Unit: the latent's own unit; 0 is perfect.
- **mse**: squared error averaged over the ``N·D`` values; unit: latent unit squared; 0 is perfect.
- **cosine**: for each of the ``N`` tokens the cosine between the predicted and the true
  ``D``-vector, averaged over tokens. In ``[-1, 1]``, 1 is perfect; scale-free, so it compares
  backbones whose latents differ in scale. A zero vector has cosine 0 with anything (norms are
  floored at ``1e-8``, as in :func:`torch.nn.functional.cosine_similarity`).

All per-frame functions return ``(B, T)`` float32 tensors, the format
:class:`futurelat.evaluation.metrics.MetricAccumulator` streams.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

#: Metric names, in the order they are reported.
LATENT_METRIC_NAMES: tuple[str, ...] = ("l1", "mse", "cosine")
#: Per metric: whether a larger value is better (used to pick the best of ``k`` samples).
HIGHER_IS_BETTER: dict[str, bool] = {"l1": False, "mse": False, "cosine": True}
#: Floor on vector norms in the cosine (as ``F.cosine_similarity``'s default).
COSINE_EPS = 1e-8


def check_latents(latents: Tensor, name: str = "latents") -> None:
    """Raise ``ValueError`` naming ``name`` and the shape unless ``latents`` is ``(B, T, N, D)`` float."""
    if not isinstance(latents, Tensor):
        raise TypeError(f"{name} must be a float tensor of shape (B, T, N, D); got {type(latents).__name__}")
    if latents.ndim != 4 or not latents.is_floating_point():
        raise ValueError(f"{name} must be a float tensor of shape (B, T, N, D); "
                         f"got dtype={latents.dtype}, shape={tuple(latents.shape)}")


def _prepare(prediction: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Checked float32 pair; raises ``ValueError`` on a non-4-d tensor or a shape mismatch."""
    check_latents(prediction, "prediction")
    check_latents(target, "target")
    if prediction.shape != target.shape:
        raise ValueError("prediction and target latents must have the same shape (B, T, N, D); got "
                         f"prediction {tuple(prediction.shape)} vs target {tuple(target.shape)}")
    return prediction.float(), target.float()


def latent_l1(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error per latent frame: ``(B, T, N, D)`` ×2 → ``(B, T)``."""
    p, t = _prepare(prediction, target)
    return (p - t).abs().mean(dim=(-2, -1))


def latent_mse(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean squared error per latent frame: ``(B, T, N, D)`` ×2 → ``(B, T)``."""
    p, t = _prepare(prediction, target)
    return (p - t).square().mean(dim=(-2, -1))


def latent_cosine(prediction: Tensor, target: Tensor) -> Tensor:
    """Per-token cosine of the ``D``-vectors, averaged over the ``N`` tokens: → ``(B, T)`` in [-1, 1]."""
    p, t = _prepare(prediction, target)
    return F.cosine_similarity(p, t, dim=-1, eps=COSINE_EPS).mean(dim=-1)


def latent_metrics(prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
    """All of :data:`LATENT_METRIC_NAMES` per latent frame: ``{"l1": (B, T), "mse": ..., "cosine": ...}``.

    Args:
        prediction: ``(B, T, N, D)`` float predicted latents.
        target: ``(B, T, N, D)`` float true latents, same shape.

    Raises:
        ValueError: on a shape mismatch or a tensor that is not 4-d float.
        TypeError: if either is not a tensor.
    """
    p, t = _prepare(prediction, target)
    return {"l1": latent_l1(p, t), "mse": latent_mse(p, t), "cosine": latent_cosine(p, t)}
