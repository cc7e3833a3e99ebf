"""Clip sampling for video datasets: which source frames a clip takes, and its square crop.

A clip is ``T`` frames ``step`` source frames apart from a start frame (:func:`clip_indices`,
:func:`max_start`); its frames are centre-cropped to a square and resized
(:func:`resize_center_crop`). Used by :class:`futurelat.datasets.kinetics.Kinetics` and the frame cache
of :mod:`futurelat.datasets.video_file`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["clip_indices", "max_start", "resize_center_crop"]


def clip_indices(video_frames: int, clip_frames: int, step: float, start: int) -> list[int]:
    """Source frame indices of a clip: ``round(start + k * step)`` for ``k < clip_frames``,
    clamped to the last frame (so a short video repeats its last frame).

    Args:
        video_frames: frames in the video (>= 1).
        clip_frames: ``T`` (>= 1).
        step: source frames between clip frames (> 0; fractional for ``target_fps``).
        start: first source frame (>= 0).
    """
    last = video_frames - 1
    return [min(last, int(math.floor(start + k * step + 0.5))) for k in range(clip_frames)]


def max_start(video_frames: int, clip_frames: int, step: float) -> int:
    """The largest start frame whose clip fits in the video; negative when the video is too short."""
    return int(math.floor(video_frames - 1 - (clip_frames - 1) * step + 1e-6))


def resize_center_crop(frames: Tensor, size: int) -> Tensor:
    """Centre-crop the largest square, then resize it to ``size x size`` (bilinear, antialiased).

    Args:
        frames: ``(T, C, H, W)`` uint8 (0..255) or float (0..1).
        size: output side in pixels.

    Returns:
        ``(T, C, size, size)`` float32 in [0, 1].
    """
    _, _, h, w = frames.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = frames[:, :, top:top + side, left:left + side]
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    if side != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp_(0.0, 1.0)
