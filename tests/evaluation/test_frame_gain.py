"""futurelat.evaluation.frame_gain: least-squares gains per future step, and the evaluator applying them."""

from __future__ import annotations

import pytest
import torch

from futurelat.evaluation.evaluator import evaluate_frames
from futurelat.evaluation.frame_gain import apply_frame_gain, fit_frame_gain
from futurelat.evaluation.metrics import MetricAccumulator, frame_metrics

TC, TF = 5, 3  # make_sequences() gives 8 frames of 16x16


class CopyLastWithStray(torch.nn.Module):
    """Copy-last plus a white square in the top-left corner, larger at each future step: stray ink
    whose share of the predicted ink grows with the horizon."""

    def rollout(self, context, num_future):
        out = context[:, -1:].repeat(1, num_future, 1, 1, 1).clone()
        for k in range(num_future):
            out[:, k, :, :k + 2, :k + 2] = 1.0  # more stray ink at later steps
        return out


def _least_squares_gain(prediction, target):
    """Per-step ``<p, y> / <p, p>`` over all clips, in float64: the closed form the module fits."""
    p, y = prediction.double(), target.double()
    return ((p * y).sum((0, 2, 3, 4)) / (p * p).sum((0, 2, 3, 4))).clamp(0, 1)


def test_gains_are_the_least_squares_fit_per_step(sequences, dataset):
    model = CopyLastWithStray()
    gain = fit_frame_gain(model, dataset, TC, TF, batch_size=4, progress=False)
    prediction = model.rollout(sequences[:, :TC], TF)
    expected = _least_squares_gain(prediction, sequences[:, TC:])
    assert gain.shape == (TF,) and gain.dtype == torch.float32
    torch.testing.assert_close(gain.double(), expected, rtol=1e-6, atol=1e-7)
    assert bool((gain[1:] < gain[:-1]).all())  # more stray ink each step: more shrinkage
    # The fitted gain is the best single multiple of each step: any other one scores a higher MSE there.
    target = sequences[:, TC:].double()
    for k in range(TF):
        best = (gain[k] * prediction[:, k] - target[:, k]).square().sum()
        for other in (gain[k] * 0.9, min(1.0, gain[k] * 1.1)):
            assert (other * prediction[:, k] - target[:, k]).square().sum() > best


def test_a_perfect_or_black_model_keeps_gain_one_and_brightening_is_clamped(sequences, dataset):
    class Dim(torch.nn.Module):  # the truth at half brightness: the fit would be 2, clamped to 1
        def rollout(self, context, num_future):
            index = [int((sequences[:, :TC] == c).flatten(1).all(1).nonzero()[0, 0]) for c in context]
            return 0.5 * sequences[index, TC:TC + num_future]

    class Black(torch.nn.Module):
        def rollout(self, context, num_future):
            return torch.zeros(context.shape[0], num_future, *context.shape[2:])

    for model in (Dim(), Black()):
        gain = fit_frame_gain(model, dataset, TC, TF, batch_size=4, progress=False)
        assert gain.tolist() == [1.0] * TF, type(model).__name__


def test_evaluator_scores_the_scaled_rollout_and_keeps_the_raw_one(sequences, dataset, tmp_path):
    model = CopyLastWithStray()
    gain = torch.tensor([0.9, 0.6, 0.3])
    plain = evaluate_frames(model, dataset, context_frames=TC, future_frames=TF, batch_size=4, progress=False,
                            num_visualize=0)
    scaled = evaluate_frames(model, dataset, context_frames=TC, future_frames=TF, batch_size=4, progress=False,
                             num_visualize=2, out_dir=tmp_path, frame_gain=gain)
    acc = MetricAccumulator()
    acc.update(frame_metrics(apply_frame_gain(model.rollout(sequences[:, :TC], TF), gain), sequences[:, TC:]))
    expected = acc.compute("test/")
    for key in ("test/mse", "test/ssim", "test/mae", "test/mse/step_03"):
        assert scaled[key] == pytest.approx(expected[key], rel=1e-6), key
        assert scaled[key.replace("test/", "test/raw/", 1)] == pytest.approx(plain[key], rel=1e-6), key
    assert scaled["test/zeros/mse"] == plain["test/zeros/mse"]  # baselines are never scaled
    assert [scaled[f"test/frame_gain/step_{k:02d}"] for k in (1, 2, 3)] == pytest.approx(gain.tolist())
    assert "test/raw/mse" not in plain and "test/frame_gain/step_01" not in plain
    assert (tmp_path / "predictions.png").exists()


def test_evaluator_scales_the_point_estimate_of_samples(dataset):
    class Noisy(torch.nn.Module):
        def rollout(self, context, num_future):
            return torch.rand(context.shape[0], num_future, *context.shape[2:])

    gain = torch.tensor([0.5, 0.5, 0.5])
    torch.manual_seed(0)
    plain = evaluate_frames(Noisy(), dataset, context_frames=TC, future_frames=TF, batch_size=4, progress=False,
                            num_visualize=0, num_samples=3, point_estimate="median")
    torch.manual_seed(0)
    scaled = evaluate_frames(Noisy(), dataset, context_frames=TC, future_frames=TF, batch_size=4, progress=False,
                             num_visualize=0, num_samples=3, point_estimate="median", frame_gain=gain)
    assert scaled["test/raw/mse"] == pytest.approx(plain["test/mse"], rel=1e-6)
    assert scaled["test/mse"] != pytest.approx(plain["test/mse"], rel=1e-3)


@pytest.mark.parametrize("gain, match", [(torch.ones(2), r"shape \(3,\)"), (torch.ones(3, 1), r"shape \(3,\)"),
                                         (torch.tensor([1.0, 1.5, 0.5]), r"in \[0, 1\]"),
                                         (torch.tensor([1.0, float("nan"), 0.5]), "finite")])
def test_bad_gains_raise_naming_the_shape_or_values(dataset, gain, match):
    with pytest.raises(ValueError, match=match):
        evaluate_frames(CopyLastWithStray(), dataset, context_frames=TC, future_frames=TF, batch_size=4,
                        progress=False, num_visualize=0, frame_gain=gain)


def test_fit_on_an_empty_dataset_raises(as_dataset):
    with pytest.raises(ValueError, match="empty"):
        fit_frame_gain(CopyLastWithStray(), as_dataset(torch.zeros(0, TC + TF, 1, 16, 16)), TC, TF, progress=False)
