"""The Moving MNIST sequence recipe: bouncing trajectories and rendering digits on a canvas.

Srivastava et al. 2015, "Unsupervised Learning of Video Representations using LSTMs" (ICML),
as implemented by OpenSTL's ``MovingMNIST.get_random_trajectory`` / ``generate_moving_mnist``:
digits move at constant speed in the unit square, bounce off its borders, and are pasted on a
black canvas, overlaps combined by a pixel-wise max. Pure numpy, no randomness: the random
draws are made by :class:`futurelat.datasets.moving_mnist.MovingMNIST`.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["bouncing_trajectories", "render"]


def bouncing_trajectories(start: np.ndarray, theta: np.ndarray, num_frames: int,
                          step_length: float = 0.1) -> np.ndarray:
    """Bouncing constant-speed trajectories in the unit square (Srivastava et al. 2015 / OpenSTL).

    Each step adds ``step_length * (sin(theta), cos(theta))`` to ``(y, x)``; a coordinate
    that leaves ``[0, 1]`` is clamped to the border and its velocity component flips.
    Frame ``t`` is the position after ``t + 1`` steps (as in OpenSTL). Vectorised over the
    leading axes.

    Args:
        start: ``(..., 2)`` float start positions ``(y, x)`` in ``[0, 1]``.
        theta: ``(...)`` float directions in radians.
        num_frames: ``T``.
        step_length: distance per frame in normalised units (canvas = 1).

    Returns:
        ``(..., T, 2)`` float64 positions ``(y, x)`` in ``[0, 1]``.
    """
    pos = np.array(start, dtype=np.float64, copy=True)
    theta = np.asarray(theta, dtype=np.float64)
    if pos.shape[-1:] != (2,) or pos.shape[:-1] != theta.shape:
        raise ValueError(f"start must be (..., 2) and theta (...); got start {pos.shape}, theta {theta.shape}")
    vel = np.stack([np.sin(theta), np.cos(theta)], axis=-1) * step_length
    out = np.empty((num_frames, *pos.shape), dtype=np.float64)
    for t in range(num_frames):
        pos += vel
        low, high = pos <= 0.0, pos >= 1.0
        np.clip(pos, 0.0, 1.0, out=pos)
        vel = np.where(low | high, -vel, vel)
        out[t] = pos
    return np.moveaxis(out, 0, -2)


def render(digits: np.ndarray, positions: np.ndarray, image_size: int = 64) -> np.ndarray:
    """Paste digits onto black canvases, combining overlaps with a pixel-wise max.

    Args:
        digits: ``(B, D, S, S)`` uint8 digit images (``D`` digits per sequence).
        positions: ``(B, D, T, 2)`` int top-left corners ``(top, left)`` in
            ``[0, image_size - S]``.
        image_size: canvas side ``H = W``.

    Returns:
        ``(B, T, H, W)`` uint8 frames.

    Raises:
        ValueError: mismatched shapes or a position off the canvas.
    """
    b, d, s, s2 = digits.shape
    canvas = image_size - s
    if s != s2 or canvas < 0 or positions.shape[:2] != (b, d) or positions.shape[-1] != 2 or positions.ndim != 4:
        raise ValueError(f"render needs digits (B, D, S, S) with S <= image_size={image_size} and positions "
                         f"(B, D, T, 2); got digits {digits.shape}, positions {positions.shape}")
    if positions.size and (positions.min() < 0 or positions.max() > canvas):
        raise ValueError(f"digit positions must lie in [0, {canvas}]; got [{positions.min()}, {positions.max()}]")
    # Each digit sits at the bottom-right of a (H + canvas)^2 pad; the H x H window starting at
    # (canvas - top, canvas - left) shows it at (top, left). Gathering those windows renders
    # every (sequence, frame) at once.
    padded = np.zeros((b, d, image_size + canvas, image_size + canvas), dtype=np.uint8)
    padded[:, :, canvas:canvas + s, canvas:canvas + s] = digits
    windows = sliding_window_view(padded, (image_size, image_size), axis=(2, 3))
    rows = np.arange(b)[:, None]
    shift = canvas - positions
    frames = windows[rows, 0, shift[:, 0, :, 0], shift[:, 0, :, 1]]
    for k in range(1, d):
        np.maximum(frames, windows[rows, k, shift[:, k, :, 0], shift[:, k, :, 1]], out=frames)
    return frames
