"""Hard shot cuts in a frame sequence, and the cut-free segments between them.

The detector is deliberately simple: each frame is made grayscale (ITU-R BT.601 luma) and
area-averaged to ``grid x grid`` pixels; the score of the pair ``(k - 1, k)`` is the mean absolute
difference of the two small frames, in [0, 1] (pixel values in [0, 1]). Frame ``k`` starts a new
shot when its score exceeds ``threshold``. Averaging over ``grid``-sized cells keeps small motion
and noise low (a few hundredths between consecutive frames of one shot) while a cut changes the
whole picture (typically 0.1 to 0.4). Gradual transitions (fades, dissolves, iris wipes) are not
detected: no single step crosses the threshold.

Shape notation: ``N`` frames, ``C`` channels (1 or 3), ``H x W`` pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["LUMA", "detect_shot_cuts", "frame_differences", "segments_between"]

#: ITU-R BT.601 luma weights of R, G, B.
LUMA = (0.299, 0.587, 0.114)


def _small_gray(frames: np.ndarray | Tensor, grid: int) -> Tensor:
    """``(N, C, H, W)`` uint8 or float in [0, 1] → ``(N, g, g)`` float32 in [0, 1], ``g = min(grid, H, W)``."""
    x = frames if isinstance(frames, Tensor) else torch.from_numpy(np.array(frames))  # a copy: memmaps are read-only
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    if x.shape[1] == 3:
        x = (x * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    g = min(grid, x.shape[-2], x.shape[-1])
    return F.adaptive_avg_pool2d(x, g)[:, 0]


def frame_differences(frames: np.ndarray | Tensor, grid: int = 16, chunk: int = 1024) -> Tensor:
    """Score of every consecutive pair of frames (see the module docstring).

    Args:
        frames: ``(N, C, H, W)``, uint8 (0..255) or float in [0, 1], ``C`` 1 or 3; a memory-mapped
            array is read ``chunk`` frames at a time.
        grid: side of the averaged frames in pixels (the frame size if smaller).

    Returns:
        ``(max(N - 1, 0),)`` float32 in [0, 1]; entry ``k - 1`` compares frames ``k - 1`` and ``k``.

    Raises:
        ValueError: ``frames`` not 4-D with 1 or 3 channels, or ``grid < 1``.
    """
    if len(frames.shape) != 4 or frames.shape[1] not in (1, 3):
        raise ValueError(f"frames must be (N, C, H, W) with C 1 or 3; got shape {tuple(frames.shape)}")
    if grid < 1:
        raise ValueError(f"grid must be >= 1; got {grid}")
    scores, prev = [], None
    for lo in range(0, frames.shape[0], chunk):
        small = _small_gray(frames[lo:lo + chunk], grid)  # (n, g, g)
        if prev is not None:
            small = torch.cat([prev, small])
        scores.append((small[1:] - small[:-1]).abs().mean(dim=(1, 2)))
        prev = small[-1:]
    return torch.cat(scores) if scores else torch.zeros(0)


def detect_shot_cuts(frames: np.ndarray | Tensor, threshold: float = 0.1, grid: int = 16) -> list[int]:
    """Frames that start a new shot: the sorted ``k`` in ``[1, N)`` whose score against frame
    ``k - 1`` exceeds ``threshold`` (in (0, 1]; see :func:`frame_differences` for the rest).

    Raises:
        ValueError: ``threshold`` outside (0, 1], or as :func:`frame_differences`.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1]; got {threshold}")
    scores = frame_differences(frames, grid)
    return [int(k) + 1 for k in torch.nonzero(scores > threshold).flatten().tolist()]


def segments_between(lo: int, hi: int, cuts: list[int]) -> list[tuple[int, int]]:
    """``[lo, hi)`` split at every cut inside it: half-open ``(start, end)`` ranges, none empty,
    that together cover ``[lo, hi)``; a cut ``k`` starts a segment at ``k``."""
    edges = [lo] + sorted(k for k in set(cuts) if lo < k < hi) + [hi]
    return [(a, b) for a, b in zip(edges, edges[1:]) if b > a]
