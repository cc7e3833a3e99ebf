"""One clip drawn as side-by-side panels over time, ``context | prediction(s) | truth``, as a GIF or an MP4.

The picture of ``python -m futurelat.predict``, drawn with :mod:`futurelat.evaluation.visualize`'s cells,
colours, font and timing: frames upscaled by ``SCALE``, a header with the frame counter (``t=12 (future
2)``, 1-based) and the panel names, ``GIF_FRAME_MS`` per frame. During the context every panel shows the
context frame; during the future the context panel holds the last context frame (dimmed), each
prediction panel shows its sample with a red border, and the truth panel the true frame (empty once the
video has ended). There is one prediction panel per sample (``sample 1``, ``sample 2``, ...), and no truth
panel when the video ends with the context.

Shape notation: ``Tc`` context frames, ``Tf`` predicted frames, ``Tt <= Tf`` true future frames,
``K`` samples, ``C`` (1 or 3) × ``H`` × ``W`` pixels in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from torch import Tensor

from futurelat.datasets.video_io import write_video
from futurelat.evaluation.visualize import (BACKGROUND, BORDER, DIM, GIF_FRAME_MS, LINE_HEIGHT, PREDICTED_COLOR,
                                            SEPARATOR, SEPARATOR_COLOR, _Canvas, _font, _text, _to_rgb_uint8)

__all__ = ["draw_panels", "panel_names", "panels_size", "save_gif", "save_mp4"]


def panel_names(num_samples: int, truth: bool) -> list[str]:
    """``["context", "prediction", "truth"]``; ``sample 1 .. K`` for ``K > 1`` samples; no ``truth`` without one."""
    predictions = ["prediction"] if num_samples == 1 else [f"sample {k + 1}" for k in range(num_samples)]
    return ["context", *predictions, *(["truth"] if truth else [])]


def panels_size(num_panels: int, height: int, width: int) -> tuple[int, int]:
    """``(width, height)`` in pixels of a picture of ``num_panels`` panels of ``height × width`` frames."""
    c = _Canvas(height, width)
    return num_panels * c.cw + (num_panels + 1) * SEPARATOR, 2 * LINE_HEIGHT + c.ch + 2 * SEPARATOR


def draw_panels(context: Tensor, predictions: Tensor, truth: Tensor | None = None) -> list[Image.Image]:
    """The ``Tc + Tf`` pictures of the animation (see the module docstring).

    Args:
        context: ``(Tc, C, H, W)`` in [0, 1].
        predictions: ``(K, Tf, C, H, W)`` (clamped to [0, 1] for display).
        truth: ``(Tt, C, H, W)`` with ``1 <= Tt <= Tf``, or ``None``.

    Raises:
        ValueError: shapes that do not fit together (named).
    """
    if context.ndim != 4 or predictions.ndim != 5 or predictions.shape[2:] != context.shape[1:]:
        raise ValueError(f"context (Tc, C, H, W) and predictions (K, Tf, C, H, W) must share C, H, W; got "
                         f"{tuple(context.shape)} and {tuple(predictions.shape)}")
    if truth is not None and (truth.shape[1:] != context.shape[1:] or not 1 <= len(truth) <= predictions.shape[1]):
        raise ValueError(f"truth must be (Tt, C, H, W) with 1 <= Tt <= Tf={predictions.shape[1]} and the "
                         f"context's C, H, W; got {tuple(truth.shape)}")
    ctx, pred = _to_rgb_uint8(context), _to_rgb_uint8(predictions)  # (Tc, h, w, 3), (K, Tf, h, w, 3)
    true = None if truth is None else _to_rgb_uint8(truth)
    tc, (k, tf), (h, w) = len(ctx), pred.shape[:2], context.shape[-2:]
    held = (ctx[-1].astype(np.float32) * DIM).astype(np.uint8)
    names = panel_names(k, truth is not None)
    c, font = _Canvas(h, w), _font()
    size_w, size_h = panels_size(len(names), h, w)
    xs = [SEPARATOR + i * (c.cw + SEPARATOR) for i in range(len(names))]
    y = 2 * LINE_HEIGHT + SEPARATOR

    pictures = []
    for i in range(tc + tf):
        future = i - tc  # >= 0 during the future
        img = np.empty((size_h, size_w, 3), dtype=np.uint8)
        img[:] = SEPARATOR_COLOR
        img[:2 * LINE_HEIGHT] = BACKGROUND
        c.paste(img, held if future >= 0 else ctx[i], y, xs[0])
        for s in range(k):
            c.paste(img, pred[s, future] if future >= 0 else ctx[i], y, xs[1 + s],
                    PREDICTED_COLOR if future >= 0 else None)
        if true is not None:
            if future < 0:
                c.paste(img, ctx[i], y, xs[-1])
            elif future < len(true):
                c.paste(img, true[future], y, xs[-1])
            else:  # the video ended: an empty cell
                img[y:y + c.ch, xs[-1]:xs[-1] + c.cw] = BACKGROUND
        pil = Image.fromarray(img)
        draw = ImageDraw.Draw(pil)
        counter = f"t={i + 1} (future {future + 1})" if future >= 0 else f"t={i + 1} (context)"
        _text(draw, (SEPARATOR + BORDER, 0), counter, font)
        for x, name in zip(xs, names):
            _text(draw, (x, LINE_HEIGHT), name, font, center_width=c.cw)
        pictures.append(pil)
    return pictures


def save_gif(pictures: list[Image.Image], path: str | Path) -> Path:
    """An animated GIF of ``pictures``, ``GIF_FRAME_MS`` each, looping; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The frame counter makes every picture distinct, so Pillow keeps them all.
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=GIF_FRAME_MS, loop=0, optimize=False)
    return path


def save_mp4(pictures: list[Image.Image], path: str | Path) -> Path:
    """An MP4 (H.264 or MPEG-4, yuv420p) of ``pictures`` at the GIF's rate, padded to an even size; returns ``path``."""
    frames = np.stack([np.asarray(p.convert("RGB")) for p in pictures])  # (T, H, W, 3)
    h, w = frames.shape[1:3]
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=SEPARATOR_COLOR[0])
    return Path(write_video(path, frames, fps=1000.0 / GIF_FRAME_MS))
