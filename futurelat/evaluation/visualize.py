"""Pictures of predicted frames: an animated GIF and a static PNG grid (Pillow only).

- :func:`save_prediction_gif`: one row per sequence with three panels
  ``context | ground truth | prediction``, animated over the ``Tc + Tf`` frames. During the
  future the context panel holds the last context frame (dimmed) and the prediction panel gets a
  red border. A header names the panels and counts frames (``t=12 (future 2)``, 1-based).
- :func:`save_prediction_grid`: two rows per sequence, ``truth`` (context then true future) and
  ``pred`` (context then predicted future, predicted cells with a red border).

Frames are upscaled by :data:`SCALE` (nearest neighbour) so 64×64 digits stay readable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from futurelat.models.base import check_frames

#: Nearest-neighbour upscaling factor of every frame.
SCALE = 2
#: Border (pixels) around every cell; coloured :data:`PREDICTED_COLOR` on predicted frames.
BORDER = 2
#: Separator (pixels) between cells / panels / rows.
SEPARATOR = 2
#: Header height (pixels) per text line.
LINE_HEIGHT = 14
#: Width of the row-label column of the PNG grid (pixels).
LABEL_WIDTH = 64
#: GIF frame duration in milliseconds (4 frames per second).
GIF_FRAME_MS = 250
#: Brightness factor of the held last context frame during the future (GIF context panel).
DIM = 0.35

BACKGROUND = (32, 32, 32)
SEPARATOR_COLOR = (96, 96, 96)
PREDICTED_COLOR = (230, 40, 40)
TEXT_COLOR = (235, 235, 235)

PANELS = ("context", "ground truth", "prediction")


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=11)  # Pillow's bundled font (needs FreeType)
    except (TypeError, ValueError, OSError, ImportError):  # old Pillow / no FreeType: bitmap font
        return ImageFont.load_default()


def _check_inputs(context: Tensor, target: Tensor, prediction: Tensor) -> None:
    """Raise ``ValueError`` naming the shapes unless they are consistent (B, Tc|Tf, C, H, W)."""
    for name, t in (("context", context), ("target", target), ("prediction", prediction)):
        check_frames(t, name)
    if target.shape != prediction.shape:
        raise ValueError(f"target {tuple(target.shape)} and prediction "
                         f"{tuple(prediction.shape)} must have the same shape (B, Tf, C, H, W)")
    if context.shape[0] != target.shape[0] or context.shape[2:] != target.shape[2:]:
        raise ValueError(f"context {tuple(context.shape)} and target {tuple(target.shape)} must "
                         "agree in batch, channels and frame size")
    if context.shape[2] not in (1, 3):
        raise ValueError(f"frames must have 1 or 3 channels; got shape {tuple(context.shape)}")
    if context.shape[0] == 0 or context.shape[1] == 0 or target.shape[1] == 0:
        raise ValueError(f"nothing to draw: context {tuple(context.shape)}, target {tuple(target.shape)}")


def _to_rgb_uint8(frames: Tensor) -> np.ndarray:
    """``(..., C, H, W)`` in [0, 1] (C = 1 or 3) → ``(..., H*SCALE, W*SCALE, 3)`` uint8."""
    x = frames.detach().float().cpu().clamp(0, 1).nan_to_num(0.0)
    if x.shape[-3] == 1:
        x = x.expand(*x.shape[:-3], 3, *x.shape[-2:])
    x = x.repeat_interleave(SCALE, dim=-2).repeat_interleave(SCALE, dim=-1)
    return (x.movedim(-3, -1) * 255.0 + 0.5).to(torch.uint8).numpy()


class _Canvas:
    """Cell geometry shared by the GIF and the grid: a cell is a frame plus its border."""

    def __init__(self, height: int, width: int):
        self.fh, self.fw = height * SCALE, width * SCALE
        self.ch, self.cw = self.fh + 2 * BORDER, self.fw + 2 * BORDER

    def paste(self, img: np.ndarray, frame: np.ndarray, y: int, x: int, border=None) -> None:
        """Write a cell at top-left ``(y, x)``: border colour (or background) then the frame."""
        img[y:y + self.ch, x:x + self.cw] = border if border is not None else BACKGROUND
        img[y + BORDER:y + BORDER + self.fh, x + BORDER:x + BORDER + self.fw] = frame


def _text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, font, center_width=None):
    x, y = xy
    if center_width is not None:
        x += max(0.0, (center_width - draw.textlength(text, font=font)) / 2)
    draw.text((x, y + 1), text, fill=TEXT_COLOR, font=font)


def gif_size(batch: int, height: int, width: int) -> tuple[int, int]:
    """``(width, height)`` in pixels of the GIF for ``batch`` sequences of ``height×width`` frames."""
    c = _Canvas(height, width)
    return (3 * c.cw + 4 * SEPARATOR, 2 * LINE_HEIGHT + batch * (c.ch + SEPARATOR) + SEPARATOR)


def grid_size(batch: int, num_context: int, num_future: int, height: int, width: int) -> tuple[int, int]:
    """``(width, height)`` in pixels of the PNG grid (see :func:`save_prediction_grid`)."""
    c = _Canvas(height, width)
    cols = num_context + num_future
    return (LABEL_WIDTH + cols * (c.cw + SEPARATOR) + SEPARATOR,
            LINE_HEIGHT + batch * (2 * c.ch + 2 * SEPARATOR))


def _panels(context: Tensor, target: Tensor, prediction: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked uint8 RGB arrays: context ``(B, Tc, h, w, 3)``, truth and predicted ``(B, Tc+Tf, h, w, 3)``.

    Both full sequences start with the context frames.
    """
    _check_inputs(context, target, prediction)
    ctx, tgt, pred = _to_rgb_uint8(context), _to_rgb_uint8(target), _to_rgb_uint8(prediction)
    return ctx, np.concatenate([ctx, tgt], axis=1), np.concatenate([ctx, pred], axis=1)


def save_prediction_gif(context: Tensor, target: Tensor, prediction: Tensor, path: str | Path) -> Path:
    """Write an animated GIF ``context | ground truth | prediction`` (one row per sequence).

    Args:
        context: ``(B, Tc, C, H, W)`` in [0, 1], ``C`` = 1 (gray) or 3 (RGB).
        target: ``(B, Tf, C, H, W)`` true future frames in [0, 1].
        prediction: ``(B, Tf, C, H, W)`` predicted future frames (clamped to [0, 1] for display).
        path: output file (parent folders are created).

    The GIF has ``Tc + Tf`` frames, :data:`GIF_FRAME_MS` ms each, loops forever, and measures
    :func:`gif_size` pixels. Returns ``path``.

    Raises:
        ValueError: if the shapes are inconsistent or ``C`` is not 1 or 3.
    """
    ctx, truth, predicted = _panels(context, target, prediction)
    b, tc, _, h, w = context.shape
    tf = target.shape[1]
    held = (ctx[:, -1].astype(np.float32) * DIM).astype(np.uint8)  # dimmed last context frame

    c = _Canvas(h, w)
    size_w, size_h = gif_size(b, h, w)
    font = _font()
    panel_x = [SEPARATOR + i * (c.cw + SEPARATOR) for i in range(3)]

    frames: list[Image.Image] = []
    for i in range(tc + tf):
        future = i >= tc
        img = np.empty((size_h, size_w, 3), dtype=np.uint8)
        img[:] = SEPARATOR_COLOR
        img[:2 * LINE_HEIGHT] = BACKGROUND
        for s in range(b):
            y = 2 * LINE_HEIGHT + SEPARATOR + s * (c.ch + SEPARATOR)
            c.paste(img, held[s] if future else ctx[s, i], y, panel_x[0])
            c.paste(img, truth[s, i], y, panel_x[1])
            c.paste(img, predicted[s, i], y, panel_x[2], PREDICTED_COLOR if future else None)
        pil = Image.fromarray(img)
        draw = ImageDraw.Draw(pil)
        counter = f"t={i + 1} (future {i + 1 - tc})" if future else f"t={i + 1} (context)"
        _text(draw, (SEPARATOR + BORDER, 0), counter, font)
        for x, name in zip(panel_x, PANELS):
            _text(draw, (x, LINE_HEIGHT), name, font, center_width=c.cw)
        frames.append(pil)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The frame counter makes every frame distinct, so Pillow keeps all Tc + Tf frames.
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=GIF_FRAME_MS,
                   loop=0, optimize=False)
    return path


def save_prediction_grid(context: Tensor, target: Tensor, prediction: Tensor, path: str | Path) -> Path:
    """Write a static PNG: per sequence a ``truth`` row and a ``pred`` row over ``Tc + Tf`` columns.

    Both rows start with the ``Tc`` context frames; ``truth`` continues with the true future,
    ``pred`` with the predicted frames (red border). A header labels columns ``t=1..`` (future
    columns as ``+1, +2, ...``). Arguments as :func:`save_prediction_gif`; the image measures
    :func:`grid_size` pixels. Returns ``path``.

    Raises:
        ValueError: if the shapes are inconsistent or ``C`` is not 1 or 3.
    """
    ctx, truth, predicted = _panels(context, target, prediction)
    b, tc, _, h, w = context.shape
    tf = target.shape[1]

    c = _Canvas(h, w)
    size_w, size_h = grid_size(b, tc, tf, h, w)
    img = np.empty((size_h, size_w, 3), dtype=np.uint8)
    img[:] = SEPARATOR_COLOR
    img[:LINE_HEIGHT] = BACKGROUND
    img[:, :LABEL_WIDTH] = BACKGROUND
    col_x = [LABEL_WIDTH + SEPARATOR + j * (c.cw + SEPARATOR) for j in range(tc + tf)]
    row_y = []
    for s in range(b):
        y0 = LINE_HEIGHT + SEPARATOR + s * (2 * c.ch + 2 * SEPARATOR)
        row_y.append(y0)
        for j in range(tc + tf):
            c.paste(img, truth[s, j], y0, col_x[j])
            c.paste(img, predicted[s, j], y0 + c.ch, col_x[j], PREDICTED_COLOR if j >= tc else None)

    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    font = _font()
    for j, x in enumerate(col_x):
        _text(draw, (x, 0), f"t={j + 1}" if j < tc else f"+{j + 1 - tc}", font, center_width=c.cw)
    for s, y0 in enumerate(row_y):
        for dy, label in ((0, "truth"), (c.ch, "pred")):
            y = y0 + dy + c.ch / 2 - LINE_HEIGHT / 2
            _text(draw, (2, y), f"#{s}", font)
            _text(draw, (24, y), label, font)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pil.save(path)
    return path
