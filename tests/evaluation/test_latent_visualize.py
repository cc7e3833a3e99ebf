"""futurelat.evaluation.latent_visualize: PCA colors of a known low-rank signal, and the PNG grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from futurelat.evaluation.latent_visualize import (
    BORDER,
    CONTEXT_GAP,
    CONTEXT_GAP_COLOR,
    LABEL_WIDTH,
    LINE_HEIGHT,
    PREDICTED_COLOR,
    SEPARATOR,
    fit_pca_basis,
    latent_grid_size,
    latent_pca_rgb,
    save_latent_grid,
)

D = 16
GRID = (4, 4)


def _signal(seed: int = 0, noise: float = 1e-4):
    """Rank-3 latents ``(2, 3, 16, D)`` from 6 distinct token 'kinds' + tiny noise.

    Returns ``(latents, kinds (2, 3, 16) int, coefficients (6, 3), directions (3, D))``. The
    coefficient variances decrease (scales 3, 2, 1), so the components come out in a known order.
    """
    g = torch.Generator().manual_seed(seed)
    directions = torch.linalg.qr(torch.randn(D, 3, generator=g, dtype=torch.float64))[0].T  # (3, D) orthonormal
    # kinds +-3 e1, +-2 e2, +-1 e3, each on 16 of the 96 tokens: the covariance is diag(9, 4, 1) / 3
    coefficients = torch.cat([torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)) * s for s in (1, -1)])
    kinds = torch.arange(6).repeat(16)[torch.randperm(96, generator=g)].reshape(2, 3, 16)
    latents = coefficients[kinds] @ directions + 5.0  # offset: the mean must be removed
    latents = latents + noise * torch.randn(latents.shape, generator=g, dtype=torch.float64)
    return latents.float(), kinds, coefficients, directions


def test_projection_recovers_the_rank3_structure():
    latents, kinds, coefficients, _ = _signal()
    basis = fit_pca_basis(latents)
    assert basis.components.shape == (D, 3) and basis.mean.shape == (D,)
    assert torch.allclose(basis.components.T @ basis.components, torch.eye(3, dtype=torch.float64), atol=1e-8)
    proj = basis.project(latents).reshape(-1, 3)  # (M, 3)
    coef = coefficients[kinds].reshape(-1, 3)
    coef = coef - coef.mean(0)
    # the projections are the centered coefficients up to a rotation: a linear fit is exact
    fit = torch.linalg.lstsq(coef, proj).solution
    assert (coef @ fit - proj).abs().max() < 1e-3
    # decreasing variance: component c follows coefficient c
    for c in range(3):
        corr = torch.corrcoef(torch.stack([proj[:, c], coef[:, c]]))[0, 1]
        assert abs(float(corr)) > 0.99, c
    # sign convention: each column's largest-magnitude entry is positive
    cols = torch.arange(3)
    assert torch.all(basis.components[basis.components.abs().argmax(0), cols] > 0)


def test_equal_tokens_get_equal_colors_and_different_ones_differ():
    latents, kinds, _, _ = _signal()
    rgb = latent_pca_rgb(latents, GRID)
    assert rgb.dtype == torch.uint8 and rgb.shape == (2, 3, 4, 4, 3)
    assert int(rgb.min()) <= 5 and int(rgb.max()) >= 250  # the 1st/99th percentiles span the range
    colors = rgb.reshape(-1, 3).int()
    flat_kinds = kinds.reshape(-1)
    for k in range(6):
        same = colors[flat_kinds == k]
        assert (same - same[0]).abs().max() <= 1, k  # noise of 1e-4 moves colors by at most 1 level
    means = torch.stack([colors[flat_kinds == k].float().mean(0) for k in range(6)])
    gaps = (means[:, None] - means[None]).abs().amax(-1) + 1000 * torch.eye(6)
    assert gaps.min() > 10


def test_a_shared_basis_colors_predictions_comparably():
    latents, _, _, _ = _signal()
    basis = fit_pca_basis(latents)
    predicted = latents[:, :1].clone()  # (2, 1, N, D): a prediction equal to the first true frame
    predicted[0, 0, 0] = latents[1, 2, 5]  # one token copied from elsewhere
    true_rgb, pred_rgb = latent_pca_rgb(latents, GRID, basis), latent_pca_rgb(predicted, GRID, basis)
    assert torch.equal(pred_rgb[1, 0], true_rgb[1, 0])
    assert torch.equal(pred_rgb[0, 0, 0, 0], true_rgb[1, 2, 1, 1])  # token 5 = row 1, column 1
    # fitting on the prediction alone would give other colors
    assert not torch.equal(latent_pca_rgb(predicted, GRID), pred_rgb)


def test_constant_and_small_inputs():
    const = torch.full((3, 4, 5), 2.0)  # (T, N, D) identical tokens
    rgb = latent_pca_rgb(const, (2, 2))
    assert rgb.shape == (3, 2, 2, 3) and torch.all(rgb == 128)
    two_d = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [1.0, 2.0]])  # D = 2 < 3 components
    rgb = latent_pca_rgb(two_d, (2, 2))
    assert torch.all(rgb[..., 2] == 128)  # the missing third component is mid gray
    assert rgb[0, 0, 0] < rgb[1, 0, 0] or rgb[0, 0, 0] > rgb[1, 0, 0]  # first component varies


def test_bad_inputs_raise():
    latents, _, _, _ = _signal()
    with pytest.raises(ValueError, match=r"N=16.*h \* w = 12"):
        latent_pca_rgb(latents, (3, 4))
    basis = fit_pca_basis(latents)
    with pytest.raises(ValueError, match="D=8"):
        latent_pca_rgb(latents[..., :8], GRID, basis)
    with pytest.raises(ValueError, match="float"):
        latent_pca_rgb(torch.zeros(4, 16, 3, dtype=torch.int64), GRID)
    with pytest.raises(ValueError, match="percentiles"):
        fit_pca_basis(latents, percentiles=(99.0, 1.0))


def test_grid_png_layout(tmp_path):
    latents, _, _, _ = _signal()  # (B=2, T'=3, N, D): 1 context + 2 future frames
    tc, cell = 1, 32
    predicted = latents[:, tc:].flip(0)  # the other sequence's future: visibly different
    copy = latents[:, tc - 1:tc].expand(-1, 2, -1, -1)
    path = save_latent_grid(latents, predicted, tc, GRID, tmp_path / "sub" / "g.png", copy_last=copy, cell_size=cell)
    with Image.open(path) as im:
        assert im.size == latent_grid_size(2, tc, 2, GRID, rows=3, cell_size=cell)
        img = np.asarray(im.convert("RGB")).astype(int)
    basis = fit_pca_basis(latents)
    expected = {"true": latent_pca_rgb(latents, GRID, basis).numpy(),
                "pred": latent_pca_rgb(torch.cat([latents[:, :tc], predicted], 1), GRID, basis).numpy(),
                "copy": latent_pca_rgb(torch.cat([latents[:, :tc], copy], 1), GRID, basis).numpy()}
    scale = cell // 4
    ch = cw = 4 * scale + 2 * BORDER
    red = np.array(PREDICTED_COLOR)
    for seq in range(2):
        y0 = LINE_HEIGHT + SEPARATOR + seq * (3 * ch + SEPARATOR)
        for r, row in enumerate(("true", "pred", "copy")):
            for j in range(3):
                x0 = LABEL_WIDTH + SEPARATOR + j * (cw + SEPARATOR) + (CONTEXT_GAP if j >= tc else 0)
                y = y0 + r * ch
                # token (2, 3) of the cell, sampled at the centre of its upscaled block
                px = img[y + BORDER + 2 * scale + scale // 2, x0 + BORDER + 3 * scale + scale // 2]
                assert np.array_equal(px, expected[row][seq, j, 2, 3]), (seq, row, j)
                assert np.array_equal(img[y, x0], red) == (row == "pred" and j >= tc), (seq, row, j)
    gap_x = LABEL_WIDTH + SEPARATOR + tc * (cw + SEPARATOR)
    assert np.array_equal(img[LINE_HEIGHT + 10, gap_x + CONTEXT_GAP // 2], np.array(CONTEXT_GAP_COLOR))
    # without copy_last: two rows per sequence
    path = save_latent_grid(latents, predicted, tc, GRID, tmp_path / "g2.png")
    with Image.open(path) as im:
        assert im.size == latent_grid_size(2, tc, 2, GRID)
    with pytest.raises(ValueError, match="predicted"):
        save_latent_grid(latents, predicted[:, :1], tc, GRID, tmp_path / "x.png")
    with pytest.raises(ValueError, match="num_context"):
        save_latent_grid(latents, predicted, 3, GRID, tmp_path / "x.png")
