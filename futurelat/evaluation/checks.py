"""The checks both evaluators run on their arguments and on every batch of dataset frames, and the
frame evaluator's collate function (which checks the items it stacks)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from futurelat.models.base import check_frames

#: Tolerance on the [0, 1] range check of dataset frames.
_RANGE_TOL = 1e-4


def check_frame_batch(frames: Tensor, start: int, total_frames: int) -> None:
    """Validate a batch of dataset frames ``(B, T, C, H, W)`` in [0, 1]; errors name the dataset index and key.

    Raises:
        ValueError: a mis-shaped batch, ``T != total_frames``, or values outside [0, 1].
    """
    where = f"dataset[{start}:{start + frames.shape[0]}]['frames']"
    check_frames(frames, where)
    if frames.shape[1] != total_frames:
        raise ValueError(f"{where} has T={frames.shape[1]} frames (shape {tuple(frames.shape[1:])}); "
                         f"expected context_frames + future_frames = {total_frames}")
    lo, hi = float(frames.min()), float(frames.max())
    if lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL:
        raise ValueError(f"{where} has values in [{lo:.4g}, {hi:.4g}]; frames must be in [0, 1]")


def check_eval_arguments(counts: Mapping[str, Any], num_visualize: Any, max_sequences: Any,
                         optional_counts: Mapping[str, Any] | None = None) -> None:
    """``counts`` (name → value, e.g. ``{"batch_size": 100}``) must be positive ints,
    ``num_visualize`` an int >= 0, ``max_sequences`` and each of ``optional_counts`` (name → value)
    ``None`` or a positive int.

    Raises:
        ValueError: naming the first bad argument and its value.
    """
    for name, value in counts.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int; got {value!r}")
    if not isinstance(num_visualize, int) or num_visualize < 0:
        raise ValueError(f"num_visualize must be an int >= 0; got {num_visualize!r}")
    for name, value in {"max_sequences": max_sequences, **(optional_counts or {})}.items():
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be None or a positive int; got {value!r}")


def collate_frames(items: list[Mapping[str, Any]]) -> Tensor:
    """Stack ``item["frames"]`` (``(T, C, H, W)``) into ``(B, T, C, H, W)``; other keys ignored."""
    try:
        frames = [torch.as_tensor(item["frames"]) for item in items]
    except (KeyError, TypeError, IndexError) as err:
        raise ValueError("dataset items must be dicts with a 'frames' tensor of shape "
                         f"(T, C, H, W); got {type(items[0]).__name__}") from err
    shapes = {tuple(f.shape) for f in frames}
    if len(shapes) != 1:
        raise ValueError(f"dataset 'frames' have different shapes within a batch: {sorted(shapes)}")
    return torch.stack(frames)
