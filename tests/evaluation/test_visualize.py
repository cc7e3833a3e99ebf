"""futurelat.evaluation.visualize: GIF/PNG sizes, frame counts and what is drawn where."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from futurelat.evaluation.visualize import (
    BORDER,
    DIM,
    LABEL_WIDTH,
    LINE_HEIGHT,
    PREDICTED_COLOR,
    SCALE,
    SEPARATOR,
    gif_size,
    grid_size,
    save_prediction_gif,
    save_prediction_grid,
)

B, TC, TF, H, W = 2, 3, 2, 16, 16
CELL = H * SCALE + 2 * BORDER


def _inputs(channels=1):
    """Constant-brightness frames: context 0.2..0.6, truth 0.8, prediction 1.0 (distinguishable)."""
    context = torch.linspace(0.2, 0.6, TC).reshape(1, TC, 1, 1, 1).expand(B, TC, channels, H, W)
    target = torch.full((B, TF, channels, H, W), 0.8)
    prediction = torch.full((B, TF, channels, H, W), 1.0)
    return context.contiguous(), target, prediction


def _gif_frames(path):
    with Image.open(path) as im:
        out = []
        for i in range(im.n_frames):
            im.seek(i)
            out.append(np.asarray(im.convert("RGB")).astype(int))
        return out, im.size, im.info


def _gif_cell_center(row, panel):
    y = 2 * LINE_HEIGHT + SEPARATOR + row * (CELL + SEPARATOR) + CELL // 2
    x = SEPARATOR + panel * (CELL + SEPARATOR) + CELL // 2
    return y, x


def test_gif_frames_and_panels(tmp_path):
    context, target, prediction = _inputs()
    path = save_prediction_gif(context, target, prediction, tmp_path / "sub" / "p.gif")
    frames, size, info = _gif_frames(path)
    assert len(frames) == TC + TF
    assert size == gif_size(B, H, W) == (3 * CELL + 4 * SEPARATOR, 2 * LINE_HEIGHT + B * (CELL + SEPARATOR) + SEPARATOR)
    assert info["loop"] == 0 and info["duration"] == 250
    tol = 4  # GIF palette quantisation
    for i, img in enumerate(frames):
        for row in range(B):
            ctx_px, gt_px, pred_px = (img[_gif_cell_center(row, p)] for p in range(3))
            if i < TC:
                expected = round(255 * float(context[0, i, 0, 0, 0]))
                assert abs(ctx_px - expected).max() <= tol and abs(pred_px - expected).max() <= tol
                assert abs(gt_px - expected).max() <= tol
            else:
                held = round(255 * 0.6) * DIM  # dimmed last context frame
                assert abs(ctx_px - held).max() <= tol
                assert abs(gt_px - 204).max() <= tol and abs(pred_px - 255).max() <= tol
        # red border on the prediction panel only while predicting
        y, x = _gif_cell_center(0, 2)
        border_px = img[y, x - CELL // 2]
        is_red = abs(border_px - np.array(PREDICTED_COLOR)).max() <= tol
        assert is_red == (i >= TC), i
        y, x = _gif_cell_center(0, 1)
        assert abs(img[y, x - CELL // 2] - np.array(PREDICTED_COLOR)).max() > tol


def test_gif_renders_rgb(tmp_path):
    context, target, prediction = _inputs(channels=3)
    prediction = prediction.clone()
    prediction[:, :, 0] = 0.0  # cyan prediction
    frames, _, _ = _gif_frames(save_prediction_gif(context, target, prediction, tmp_path / "p.gif"))
    px = frames[TC][_gif_cell_center(1, 2)]
    assert px[0] <= 4 and px[1] >= 250 and px[2] >= 250


def test_grid_layout(tmp_path):
    context, target, prediction = _inputs()
    path = save_prediction_grid(context, target, prediction, tmp_path / "g.png")
    with Image.open(path) as im:
        assert im.size == grid_size(B, TC, TF, H, W)
        img = np.asarray(im.convert("RGB")).astype(int)
    red = np.array(PREDICTED_COLOR)
    for seq in range(B):
        y_truth = LINE_HEIGHT + SEPARATOR + seq * (2 * CELL + 2 * SEPARATOR)
        for row, y0 in (("truth", y_truth), ("pred", y_truth + CELL)):
            for j in range(TC + TF):
                x0 = LABEL_WIDTH + SEPARATOR + j * (CELL + SEPARATOR)
                centre = img[y0 + CELL // 2, x0 + CELL // 2]
                if j < TC:
                    expected = round(255 * float(context[0, j, 0, 0, 0]))
                else:
                    expected = 204 if row == "truth" else 255
                assert abs(centre - expected).max() <= 1, (seq, row, j)
                bordered = (img[y0, x0] == red).all()
                assert bordered == (row == "pred" and j >= TC), (seq, row, j)


def test_bad_shapes_raise(tmp_path):
    context, target, prediction = _inputs()
    with pytest.raises(ValueError, match="same shape"):
        save_prediction_gif(context, target, prediction[:, :1], tmp_path / "x.gif")
    with pytest.raises(ValueError, match="agree"):
        save_prediction_grid(context[:1], target, prediction, tmp_path / "x.png")
    with pytest.raises(ValueError, match="1 or 3 channels"):
        save_prediction_grid(context.expand(-1, -1, 2, -1, -1), target.expand(-1, -1, 2, -1, -1),
                             prediction.expand(-1, -1, 2, -1, -1), tmp_path / "x.png")
