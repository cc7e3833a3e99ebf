"""futurelat.evaluation.metrics against plain numpy and per-frame torchmetrics calls."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from futurelat.evaluation.metrics import (
    PSNR_CAP_DB,
    MetricAccumulator,
    frame_mae,
    frame_metrics,
    frame_mse,
    frame_psnr,
    frame_ssim,
    frame_ssim_fast,
    to_gray,
)


def _pair(seed=0, b=3, t=4, c=1, size=16):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(b, t, c, size, size, generator=g)
    prediction = (target + 0.2 * torch.randn(b, t, c, size, size, generator=g)).clamp(0, 1)
    return prediction, target


def test_identical_frames_score_perfectly():
    _, target = _pair()
    m = frame_metrics(target, target)
    assert m["mse"].shape == (3, 4)
    assert torch.all(m["mse"] == 0) and torch.all(m["mae"] == 0)
    assert torch.allclose(m["ssim"], torch.ones(3, 4), atol=1e-5)
    assert torch.all(m["psnr"] == PSNR_CAP_DB)


def test_mse_mae_psnr_match_numpy():
    prediction, target = _pair(seed=1)
    p, t = prediction.numpy().astype(np.float64), target.numpy().astype(np.float64)
    err = (p - t).reshape(3, 4, -1)
    np.testing.assert_allclose(frame_mse(prediction, target).numpy(), (err ** 2).sum(-1), rtol=1e-5)
    np.testing.assert_allclose(frame_mae(prediction, target).numpy(), np.abs(err).sum(-1), rtol=1e-5)
    psnr = 10 * np.log10(1.0 / (err ** 2).mean(-1))
    np.testing.assert_allclose(frame_psnr(prediction, target).numpy(), psnr, rtol=1e-5)


def test_ssim_is_per_frame_and_in_order():
    prediction, target = _pair(seed=2)
    # different noise levels per frame so a transposed/reshaped result would not match
    prediction = target + torch.linspace(0.02, 0.4, 12).reshape(3, 4, 1, 1, 1) * (prediction - target)
    ssim = frame_ssim(prediction, target)
    for i in range(3):
        for k in range(4):
            ref = structural_similarity_index_measure(
                prediction[i, k:k + 1].clamp(0, 1), target[i, k:k + 1], data_range=1.0)
            assert ssim[i, k].item() == pytest.approx(ref.item(), abs=1e-6)
    assert torch.all(ssim.flatten().diff() < 0)  # more noise -> lower SSIM


def test_ssim_leaves_the_onednn_switch_as_it_found_it():
    prediction, target = _pair(seed=3)
    before = torch.backends.mkldnn.enabled
    reference = frame_ssim(prediction, target)  # oneDNN off inside, on CPU
    assert torch.backends.mkldnn.enabled == before
    with torch.backends.mkldnn.flags(enabled=True, deterministic=None, allow_tf32=None):
        default = structural_similarity_index_measure(  # torchmetrics with PyTorch's default backend
            prediction.flatten(0, 1), target.flatten(0, 1), data_range=1.0, reduction="none").reshape(3, 4)
    torch.testing.assert_close(reference, default, rtol=0, atol=1e-6)


def test_prediction_is_clamped_before_scoring():
    target = torch.ones(1, 2, 1, 8, 8)
    target[:, :, :, :4] = 0.0
    prediction = target * 3.0 - 1.0  # 2 where target is 1, -1 where target is 0
    m = frame_metrics(prediction, target)
    assert torch.all(m["mse"] == 0) and torch.all(m["psnr"] == PSNR_CAP_DB)


def test_rgb_is_averaged_to_gray():
    rgb = torch.rand(2, 3, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    gray = to_gray(rgb)
    assert gray.shape == (2, 3, 1, 8, 8)
    torch.testing.assert_close(gray[..., 0, :, :], rgb.mean(2))
    prediction, target = _pair(seed=4, c=1)
    m1 = frame_metrics(prediction, target)
    m3 = frame_metrics(prediction.expand(-1, -1, 3, -1, -1), target.expand(-1, -1, 3, -1, -1))
    for name in m1:
        torch.testing.assert_close(m1[name], m3[name], rtol=1e-6, atol=1e-6)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="1 or 3 channels"):
        to_gray(torch.zeros(1, 2, 2, 8, 8))
    with pytest.raises(ValueError, match="same shape"):
        frame_metrics(torch.zeros(1, 2, 1, 8, 8), torch.zeros(1, 3, 1, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        frame_mse(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8))


def test_accumulator_streams_and_reports_per_step():
    prediction, target = _pair(seed=5, b=6, t=3)
    whole = MetricAccumulator()
    whole.update(frame_metrics(prediction, target))
    split = MetricAccumulator()
    for s in (slice(0, 1), slice(1, 4), slice(4, 6)):
        split.update(frame_metrics(prediction[s], target[s]))
    a, b = whole.compute("x/"), split.compute("x/")
    assert a.keys() == b.keys()
    for k in a:  # float32 SSIM of one frame may differ in its last bits with the batch it is convolved in
        assert a[k] == pytest.approx(b[k], rel=1e-6 if "ssim" in k else 1e-9, abs=1e-9)
    mse = frame_mse(prediction, target).double()
    assert a["x/mse"] == pytest.approx(mse.mean().item(), rel=1e-9)
    assert a["x/mse/step_02"] == pytest.approx(mse[:, 1].mean().item(), rel=1e-9)
    assert "x/mse/step_04" not in a
    for name in ("mse", "mae", "ssim", "psnr"):
        steps = [a[f"x/{name}/step_{k:02d}"] for k in (1, 2, 3)]
        assert np.mean(steps) == pytest.approx(a[f"x/{name}"], rel=1e-9)
    assert split.num_sequences == 6


def test_accumulator_rejects_mismatched_batches():
    acc = MetricAccumulator()
    with pytest.raises(RuntimeError):
        acc.compute()
    acc.update({"mse": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="steps"):
        acc.update({"mse": torch.zeros(2, 4)})
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        acc.update({"mse": torch.zeros(2, 3), "mae": torch.zeros(2, 2)})


@pytest.mark.parametrize("shape", [(2, 3, 1, 64, 64), (2, 2, 3, 32, 48), (1, 1, 1, 11, 7)])
def test_the_loss_ssim_equals_the_evaluation_ssim(shape):
    g = torch.Generator().manual_seed(0)
    prediction = torch.rand(*shape, generator=g) * 1.2 - 0.1  # some values outside [0, 1]: both clamp
    target = torch.rand(*shape, generator=g)
    target = target * (target > 0.7)  # mostly black, as Moving MNIST
    torch.testing.assert_close(frame_ssim_fast(prediction, target), frame_ssim(prediction, target),
                               rtol=0, atol=1e-6)
    prediction.requires_grad_(True)
    frame_ssim_fast(prediction, target).sum().backward()
    assert prediction.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="same shape"):
        frame_ssim_fast(prediction, target[..., :-1])
