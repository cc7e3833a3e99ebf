"""The sharpness figure of GAN on vs off: high-frequency energy of a prediction relative to the truth."""

import pytest
import torch
import torch.nn.functional as F

from futurelat.evaluation.metrics import frame_laplacian_energy, sharpness_ratio


def _checkerboard(size: int = 8) -> torch.Tensor:
    i = torch.arange(size)
    return ((i[:, None] + i[None, :]) % 2).float().view(1, 1, 1, size, size)


def test_laplacian_energy_of_known_frames():
    # a checkerboard's Laplacian is ±4 everywhere inside: energy 16; a constant or a ramp has none
    board = _checkerboard()
    assert frame_laplacian_energy(board).shape == (1, 1)
    assert frame_laplacian_energy(board).item() == pytest.approx(16.0)
    ramp = torch.linspace(0, 1, 8).expand(8, 8).reshape(1, 1, 1, 8, 8)
    assert frame_laplacian_energy(ramp).item() == pytest.approx(0.0, abs=1e-10)
    rgb = board.expand(1, 1, 3, 8, 8)  # scored on gray, like the other metrics
    assert frame_laplacian_energy(rgb).item() == pytest.approx(16.0)


def test_sharpness_ratio_falls_with_blur_and_is_one_for_the_truth():
    torch.manual_seed(0)
    truth = (torch.rand(2, 3, 1, 16, 16) > 0.7).float()
    assert sharpness_ratio(truth, truth) == pytest.approx(1.0)
    blurred = F.avg_pool2d(truth.flatten(0, 1), 3, stride=1, padding=1, count_include_pad=False).view_as(truth)
    assert 0 < sharpness_ratio(blurred, truth) < 0.5
    assert sharpness_ratio(truth * 0.5, truth) == pytest.approx(0.25)  # energy is quadratic in contrast
    gray = 0.3 + 0.4 * truth  # room for noise inside [0, 1]
    assert sharpness_ratio(gray + 0.2 * torch.randn_like(gray), gray) > 1.2  # noise counts as detail too
    with pytest.raises(ValueError, match="same shape"):
        sharpness_ratio(truth[:, :1], truth)
