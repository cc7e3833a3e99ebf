"""Reader of the standard Moving MNIST test file ``mnist_test_seq.npy``.

The file (Srivastava et al. 2015) holds ``(T, N, 64, 64)`` uint8 frames, ``T = 20`` frames of
``N = 10,000`` sequences, time first. :func:`load_test_file` memory-maps it and refuses any other
layout with a message that names the likely fix (e.g. a transpose for ``(N, T, 64, 64)`` data).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["load_test_file"]


def load_test_file(path: str, num_frames: int, image_size: int) -> np.ndarray:
    """Memory-map ``mnist_test_seq.npy`` and check it is ``(T, N, H, W)`` uint8 with ``T = num_frames``.

    Returns the array as stored, the sequence axis at position 1 (the standard file: ``(20, N, 64, 64)``).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: unreadable, or any other layout: wrong ndim, dtype or frame size, ``T !=
            num_frames`` (``context_frames + future_frames``), or ``(N, T, H, W)``-ordered data
            (the message names the shape, the expected layout and the likely fix, e.g.
            ``np.swapaxes(a, 0, 1)``). For ``N == T`` the order is read from the pixels
            (:func:`_looks_transposed`).
    """
    expected = (f"expected the standard mnist_test_seq.npy layout (T, N, H, W) = ({num_frames}, N, {image_size}, "
                f"{image_size}) uint8, T = context_frames + future_frames = {num_frames}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Moving MNIST test_file not found: {path} ({expected})")
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ValueError(f"cannot read Moving MNIST test_file {path}: {err} ({expected})") from err
    problem = _layout_problem(data, num_frames, image_size)
    if problem:
        raise ValueError(f"malformed Moving MNIST test_file {path}: {problem}; {expected}")
    return data


def _layout_problem(data: Any, num_frames: int, image_size: int) -> str | None:
    """What is wrong with the layout of a test file's array (with the likely fix), or ``None``."""
    shape = getattr(data, "shape", None)
    if not isinstance(data, np.ndarray) or data.ndim != 4:
        return f"shape {shape}"
    if data.dtype != np.uint8:
        return f"dtype {data.dtype}"
    if data.shape[2:] != (image_size, image_size):
        return f"frame size {data.shape[2:]} (shape {data.shape})"
    transpose = ("looks like (N, T, H, W) = sequences first: transpose it with a = np.swapaxes(a, 0, 1) "
                 "and save it again")
    if data.shape[0] != num_frames:
        if data.shape[1] == num_frames:
            return f"shape {data.shape} {transpose}"
        return (f"shape {data.shape} holds {data.shape[0]} frames per sequence, not context_frames + future_frames "
                f"= {num_frames}: set dataset.context_frames and dataset.future_frames to sum to {data.shape[0]}, "
                f"keep the first frames with a = a[:{num_frames}], or, if the file is (N, T, H, W), "
                "transpose it with a = np.swapaxes(a, 0, 1)")
    if data.shape[1] < 1:
        return f"no sequences (shape {data.shape})"
    if data.shape[1] == num_frames and _looks_transposed(data):
        return (f"shape {data.shape} is ambiguous (N == T) and its pixels change less from one sequence to the "
                f"next than from one frame to the next: it {transpose}")
    return None


def _looks_transposed(data: np.ndarray, cell: int = 8) -> bool:
    """For ``N == T``: is axis 1, not axis 0, the time axis of ``data`` ``(A, A, H, W)``?

    Consecutive frames of a Moving MNIST sequence show the same digits a few pixels apart;
    neighbouring sequences show other digits elsewhere. On frames averaged over ``cell x cell``
    blocks (so a small shift changes little), the mean absolute change along the time axis is
    about a third of that along the sequence axis (step_length 0.1; half at 0.2). ``True`` when
    axis 1 changes less than axis 0 by a factor over 1.25; constant or noise data gives ``False``.
    """
    a, _, h, w = data.shape
    h, w = h // cell * cell, w // cell * cell  # image_size >= digit_size (28) > cell
    x = np.asarray(data[:, :, :h, :w], dtype=np.float32)
    x = x.reshape(a, a, h // cell, cell, w // cell, cell).mean(axis=(3, 5))
    along_0 = np.abs(np.diff(x, axis=0)).mean()
    along_1 = np.abs(np.diff(x, axis=1)).mean()
    return bool(along_1 * 1.25 < along_0)
