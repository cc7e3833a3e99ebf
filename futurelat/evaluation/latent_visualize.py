"""Pictures of latents: each token's ``D``-vector projected on 3 principal components shown as RGB.

A backbone without a pixel decoder (V-JEPA 2) can still be looked at: fit a PCA on the TRUE latents
of the sequences shown, project every token (true and predicted alike) on the first three
components and map them to red, green and blue. Tokens that the encoder sees as similar get similar
colors, so moving objects stay visible as colored blobs on the token grid.

- :class:`PCABasis` / :func:`fit_pca_basis`: the mean, the three components and, per component,
  the 1st/99th percentiles of the fitted latents' projections, which become colors 0 and 255.
  Predictions use the SAME basis and range, so colors are comparable across rows; values beyond
  the range are clipped.
- :func:`latent_pca_rgb`: latents ``(..., N, D)`` → uint8 images ``(..., h, w, 3)``.
- :func:`save_latent_grid`: a PNG with, per sequence, rows ``true`` (context then true future),
  ``pred`` (context then predicted future, red borders) and optionally ``copy`` (context then the
  last context frame repeated); a light gap separates context from future columns.

Shape notation: ``B`` sequences, ``T'`` latent frames (``Tc'`` context + ``Tf'`` future), ``N = h·w``
tokens per latent frame on an ``(h, w)`` grid, ``D`` latent channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from futurelat.evaluation.latent_metrics import check_latents
from futurelat.evaluation.visualize import (
    BACKGROUND,
    BORDER,
    LABEL_WIDTH,
    LINE_HEIGHT,
    PREDICTED_COLOR,
    SEPARATOR,
    SEPARATOR_COLOR,
    _font,
    _text,
)

#: Number of principal components shown (one per RGB channel).
NUM_COMPONENTS = 3
#: Percentiles of the fitted projections mapped to colors 0 and 255.
PERCENTILES = (1.0, 99.0)
#: Default target cell size in pixels (longer side of the token grid, nearest-neighbour upscaled).
CELL_SIZE = 64
#: Width in pixels of the gap between the last context column and the first future column.
CONTEXT_GAP = 6
CONTEXT_GAP_COLOR = (220, 220, 220)
#: Rows fitted at most when computing percentiles (larger inputs are subsampled with a fixed stride).
_MAX_QUANTILE_ROWS = 1_000_000


@dataclass(frozen=True)
class PCABasis:
    """A fitted projection ``D → 3`` and the color range of each component.

    Attributes:
        mean: ``(D,)`` float64 mean of the fitted latents (subtracted before projecting).
        components: ``(D, 3)`` float64 orthonormal principal directions, by decreasing variance;
            a component the data does not span (``D < 3`` or rank < 3) is an all-zero column.
            Signs are fixed so each column's largest-magnitude entry is positive.
        low: ``(3,)`` float64 1st percentile of each component's projections → color 0.
        high: ``(3,)`` float64 99th percentile → color 255.
    """

    mean: Tensor
    components: Tensor
    low: Tensor
    high: Tensor

    def project(self, latents: Tensor) -> Tensor:
        """``(..., D)`` → ``(..., 3)`` float64 coordinates on the components.

        Raises:
            ValueError: if the last dimension is not the basis's ``D``.
        """
        if latents.shape[-1] != self.mean.shape[0]:
            raise ValueError(f"latents have D={latents.shape[-1]} (shape {tuple(latents.shape)}); "
                             f"the PCA basis was fitted on D={self.mean.shape[0]}")
        x = latents.detach().to("cpu", torch.float64) - self.mean
        return x @ self.components


def fit_pca_basis(latents: Tensor, percentiles: tuple[float, float] = PERCENTILES) -> PCABasis:
    """Fit :class:`PCABasis` on latent vectors ``(..., D)`` (every leading index is one sample).

    The components are the top eigenvectors of the ``D×D`` covariance of the centered vectors
    (exact and deterministic; cheap for ``D`` up to a few thousand). The color range of each
    component is the ``percentiles`` (in percent) of the fitted vectors' projections.

    Raises:
        ValueError: if ``latents`` is not a float tensor with at least 2 dims and one vector, or
            a percentile is outside ``[0, 100]`` / not increasing.
    """
    if not isinstance(latents, Tensor) or latents.ndim < 2 or not latents.is_floating_point():
        raise ValueError("latents must be a float tensor of shape (..., D); got "
                         f"{getattr(latents, 'shape', type(latents).__name__)}")
    lo_pct, hi_pct = percentiles
    if not 0.0 <= lo_pct < hi_pct <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100; got {percentiles}")
    x = latents.detach().to("cpu", torch.float64).reshape(-1, latents.shape[-1])  # (M, D)
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"cannot fit a PCA on latents of shape {tuple(latents.shape)}: no vectors")
    mean = x.mean(0)
    x = x - mean
    _, vectors = torch.linalg.eigh(x.T @ x)  # ascending eigenvalues; columns are eigenvectors
    q = min(NUM_COMPONENTS, x.shape[1])
    components = torch.zeros(x.shape[1], NUM_COMPONENTS, dtype=torch.float64)
    components[:, :q] = vectors[:, -q:].flip(-1)
    sign = components[components.abs().argmax(0), torch.arange(NUM_COMPONENTS)].sign()  # (3,)
    components *= torch.where(sign == 0, 1.0, sign)  # eigenvectors are defined up to sign: fix it
    proj = x @ components  # (M, 3)
    if proj.shape[0] > _MAX_QUANTILE_ROWS:
        proj = proj[:: -(-proj.shape[0] // _MAX_QUANTILE_ROWS)]
    q_lo, q_hi = torch.quantile(proj, torch.tensor([lo_pct, hi_pct], dtype=torch.float64) / 100.0, dim=0)
    return PCABasis(mean=mean, components=components, low=q_lo, high=q_hi)


def latent_pca_rgb(latents: Tensor, grid: tuple[int, int], basis: PCABasis | None = None) -> Tensor:
    """Latents ``(..., N, D)`` → uint8 RGB images ``(..., h, w, 3)`` in ``[0, 255]``.

    Args:
        latents: float, ``N = h * w`` tokens in raster order (row by row) on the token grid.
        grid: ``(h, w)``.
        basis: the projection and color range; ``None`` fits one on ``latents`` themselves
            (:func:`fit_pca_basis`). Pass the basis fitted on the true latents to color predictions
            comparably. Component ``c`` maps ``[basis.low[c], basis.high[c]]`` linearly to
            ``[0, 255]`` (clipped beyond); a component with an empty range (constant data) is 128.

    Raises:
        ValueError: if ``latents`` is not float with ``ndim >= 2``, ``N != h * w``, or ``D`` differs
            from the basis's.
    """
    if not isinstance(latents, Tensor) or latents.ndim < 2 or not latents.is_floating_point():
        raise ValueError("latents must be a float tensor of shape (..., N, D); got "
                         f"{getattr(latents, 'shape', type(latents).__name__)}")
    h, w = (int(v) for v in grid)
    if h < 1 or w < 1 or latents.shape[-2] != h * w:
        raise ValueError(f"latents have N={latents.shape[-2]} tokens (shape {tuple(latents.shape)}); "
                         f"grid {tuple(grid)} needs N = h * w = {h * w}")
    basis = basis if basis is not None else fit_pca_basis(latents)
    proj = basis.project(latents)  # (..., N, 3)
    width = basis.high - basis.low
    flat = width <= 1e-12 * max(1.0, float(width.abs().max()))
    unit = (proj - basis.low) / torch.where(flat, torch.ones_like(width), width)
    unit = torch.where(flat, torch.full_like(unit, 128 / 255), unit).clamp(0.0, 1.0)
    rgb = (unit * 255.0 + 0.5).to(torch.uint8)
    return rgb.reshape(*latents.shape[:-2], h, w, NUM_COMPONENTS)


# ---------------------------------------------------------------------------------------------
# The PNG grid
# ---------------------------------------------------------------------------------------------


def _scale(grid: tuple[int, int], cell_size: int) -> int:
    """Nearest-neighbour factor so the longer grid side is about ``cell_size`` pixels (at least 1)."""
    return max(1, int(cell_size) // max(grid))


def latent_grid_size(batch: int, num_context: int, num_future: int, grid: tuple[int, int],
                     rows: int = 2, cell_size: int = CELL_SIZE) -> tuple[int, int]:
    """``(width, height)`` in pixels of :func:`save_latent_grid`'s PNG (``rows`` = 2, or 3 with copy)."""
    s = _scale(grid, cell_size)
    ch, cw = grid[0] * s + 2 * BORDER, grid[1] * s + 2 * BORDER
    cols = num_context + num_future
    return (LABEL_WIDTH + SEPARATOR + cols * (cw + SEPARATOR) + CONTEXT_GAP,
            LINE_HEIGHT + SEPARATOR + batch * (rows * ch + SEPARATOR))


def _check_grid_inputs(true: Tensor, predicted: Tensor, num_context: int, copy_last: Tensor | None) -> None:
    check_latents(true, "true latents")
    check_latents(predicted, "predicted latents")
    b, t, n, d = true.shape
    if not 1 <= num_context < t:
        raise ValueError(f"num_context={num_context} must be in [1, T'={t}) for true latents {tuple(true.shape)}")
    expected = (b, t - num_context, n, d)
    for name, x in (("predicted", predicted), ("copy_last", copy_last)):
        if x is not None and tuple(x.shape) != expected:
            raise ValueError(f"{name} latents have shape {tuple(x.shape)}; expected (B, Tf', N, D) = {expected} "
                             f"for true latents {tuple(true.shape)} with num_context={num_context}")
    if b == 0:
        raise ValueError(f"nothing to draw: true latents {tuple(true.shape)}")


def save_latent_grid(true: Tensor, predicted: Tensor, num_context: int, grid: tuple[int, int],
                     path: str | Path, copy_last: Tensor | None = None, basis: PCABasis | None = None,
                     cell_size: int = CELL_SIZE) -> Path:
    """Write a PNG of PCA-colored latents: per sequence a ``true`` and a ``pred`` row (+ ``copy``).

    Args:
        true: ``(B, Tc' + Tf', N, D)`` true latents, context then future.
        predicted: ``(B, Tf', N, D)`` predicted future latents.
        num_context: ``Tc'``.
        grid: ``(h, w)`` token grid, ``N = h * w``.
        path: output file (parent folders are created).
        copy_last: optional ``(B, Tf', N, D)`` baseline shown as a third ``copy`` row.
        basis: ``None`` fits :func:`fit_pca_basis` on ``true`` (all its sequences and frames).
        cell_size: each token grid is upscaled (nearest) by ``max(1, cell_size // max(h, w))``.

    Columns are latent frames ``t=1..Tc'`` then ``+1..+Tf'`` after a light gap; predicted future
    cells get a red border. The image measures :func:`latent_grid_size` pixels. Returns ``path``.

    Raises:
        ValueError: on inconsistent shapes, ``num_context`` outside ``[1, T')`` or ``N != h * w``.
    """
    _check_grid_inputs(true, predicted, num_context, copy_last)
    b, t = true.shape[:2]
    tc = num_context
    basis = basis if basis is not None else fit_pca_basis(true)
    s = _scale(grid, cell_size)
    rows = {"true": latent_pca_rgb(true, grid, basis),
            "pred": latent_pca_rgb(torch.cat([true[:, :tc], predicted.to(true.dtype)], 1), grid, basis)}
    if copy_last is not None:
        rows["copy"] = latent_pca_rgb(torch.cat([true[:, :tc], copy_last.to(true.dtype)], 1), grid, basis)
    cells = {k: v.repeat_interleave(s, -3).repeat_interleave(s, -2).numpy() for k, v in rows.items()}

    fh, fw = grid[0] * s, grid[1] * s
    ch, cw = fh + 2 * BORDER, fw + 2 * BORDER
    size_w, size_h = latent_grid_size(b, tc, t - tc, grid, len(rows), cell_size)
    img = np.empty((size_h, size_w, 3), dtype=np.uint8)
    img[:] = SEPARATOR_COLOR
    img[:LINE_HEIGHT] = BACKGROUND
    img[:, :LABEL_WIDTH] = BACKGROUND
    col_x = [LABEL_WIDTH + SEPARATOR + j * (cw + SEPARATOR) + (CONTEXT_GAP if j >= tc else 0) for j in range(t)]
    gap_x = col_x[tc] - CONTEXT_GAP - SEPARATOR
    img[LINE_HEIGHT:, gap_x:gap_x + CONTEXT_GAP] = CONTEXT_GAP_COLOR
    row_y = []
    for seq in range(b):
        y0 = LINE_HEIGHT + SEPARATOR + seq * (len(rows) * ch + SEPARATOR)
        row_y.append(y0)
        for r, (name, pictures) in enumerate(cells.items()):
            y = y0 + r * ch
            for j, x in enumerate(col_x):
                red = name == "pred" and j >= tc
                img[y:y + ch, x:x + cw] = PREDICTED_COLOR if red else BACKGROUND
                img[y + BORDER:y + BORDER + fh, x + BORDER:x + BORDER + fw] = pictures[seq, j]

    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    font = _font()
    for j, x in enumerate(col_x):
        _text(draw, (x, 0), f"t={j + 1}" if j < tc else f"+{j + 1 - tc}", font, center_width=cw)
    for seq, y0 in enumerate(row_y):
        for r, name in enumerate(cells):
            y = y0 + r * ch + ch / 2 - LINE_HEIGHT / 2
            _text(draw, (2, y), f"#{seq}", font)
            _text(draw, (24, y), name, font)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pil.save(path)
    return path
