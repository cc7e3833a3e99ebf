"""One prediction from ``k`` sampled futures: the ensemble's point estimate, entry by entry (pixels, or
latents for a run scored in latent space).

A sampled model (a code prior, a flow head at ``noise_scale > 0``) describes the future by a
distribution; a metric such as MSE scores one frame. Scoring each sample on its own charges the
model twice for every stroke it draws in a plausible but wrong place (once where it drew it, once
where the truth is), which is why black frames beat sharp guesses on Moving MNIST. The
decision-theoretic answer is a point estimate of the predictive distribution, as ensemble weather
forecasts report (e.g. Leutbecher & Palmer 2008, "Ensemble forecasting"):

- ``"mean"``: the per-pixel mean of the ``k`` samples, the estimate that minimises expected squared
  error; where the samples disagree it is grey;
- ``"median"``: the per-pixel median, the estimate that minimises expected absolute error; a
  pixel is ink only where most samples draw ink there, so strokes the samples agree on stay sharp
  and the rest fades to background. For even ``k`` it is the lower of the two middle values
  (:func:`torch.median`).

``"sample"`` is no reduction: each sample is scored on its own (the evaluator's default).
"""

from __future__ import annotations

import logging
from typing import Any

from torch import Tensor

log = logging.getLogger(__name__)

#: Valid ``eval.point_estimate`` values.
POINT_ESTIMATES: tuple[str, ...] = ("sample", "mean", "median")


def check_point_estimate(kind: str, num_samples: int) -> None:
    """Raise ``ValueError`` unless ``kind`` is one of :data:`POINT_ESTIMATES` and, for a reduction,
    ``num_samples >= 2`` (one sample has nothing to reduce)."""
    if kind not in POINT_ESTIMATES:
        raise ValueError(f"eval.point_estimate must be one of {POINT_ESTIMATES}; got {kind!r}")
    if kind != "sample" and num_samples < 2:
        raise ValueError(f"eval.point_estimate={kind} reduces several sampled futures and needs "
                         f"eval.num_samples >= 2; got {num_samples}")


def futures_to_draw(model: Any, num_samples: int, kind: str) -> tuple[int, str]:
    """``(num_samples, kind)`` after :func:`check_point_estimate`, or ``(1, "sample")`` for a model whose
    ``deterministic`` attribute is true (its futures would all be the same; logged).

    Raises:
        ValueError: as :func:`check_point_estimate`.
    """
    check_point_estimate(kind, num_samples)
    if num_samples > 1 and getattr(model, "deterministic", False) is True:
        log.info("the model's rollouts are deterministic: one future per context instead of "
                 "eval.num_samples=%d (and no point estimate)", num_samples)
        return 1, "sample"
    return num_samples, kind


def point_estimate(samples: Tensor, kind: str) -> Tensor:
    """Reduce ``k`` sampled futures to one.

    Args:
        samples: ``(k, B, ...)``, ``k >= 1`` futures of the same ``B`` contexts: frames
            ``(k, B, T, C, H, W)`` in [0, 1], or latents ``(k, B, T', N, D)``.
        kind: ``"mean"`` or ``"median"`` (see the module docstring).

    Returns:
        ``(B, ...)``, in the samples' range.

    Raises:
        ValueError: ``kind`` is not ``"mean"`` or ``"median"``, or ``samples`` has fewer than 2 dims.
    """
    if samples.ndim < 2:
        raise ValueError(f"samples must be (k, B, ...); got shape {tuple(samples.shape)}")
    if kind == "mean":
        return samples.mean(0)
    if kind == "median":
        return samples.median(0).values
    raise ValueError(f"point_estimate reduces with 'mean' or 'median'; got {kind!r}")
