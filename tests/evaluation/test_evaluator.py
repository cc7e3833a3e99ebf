"""futurelat.evaluation.evaluator.evaluate_frames on tiny synthetic sequences."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from futurelat.evaluation.evaluator import evaluate_frames, summarize
from futurelat.evaluation.visualize import gif_size, grid_size

TC, TF = 5, 3  # make_sequences() gives 8 frames of 16x16
METRICS = ("mse", "mae", "ssim", "psnr")


class OracleModel:
    """Returns the true future by looking the context up among the known sequences."""

    def __init__(self, sequences, tc: int = TC):
        self.sequences, self.tc = sequences, tc

    def rollout(self, context, num_future):
        out = []
        for ctx in context:
            match = (self.sequences[:, :self.tc] == ctx).flatten(1).all(1).nonzero()
            assert len(match) == 1
            out.append(self.sequences[match[0, 0], self.tc:self.tc + num_future])
        return torch.stack(out)


class ZeroModel:
    def rollout(self, context, num_future):
        return torch.zeros(context.shape[0], num_future, *context.shape[2:])


class ShiftModel(torch.nn.Module):
    """Non-trivial predictions: the last context frame rolled one pixel per step, dimmed."""

    def __init__(self, reconstruct_noise: float | None = None):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.9))
        self.reconstruct_noise = reconstruct_noise
        self.seen_training = []

    def rollout(self, context, num_future):
        self.seen_training.append(self.training)
        last = context[:, -1]
        return torch.stack([self.scale * last.roll(k + 1, dims=-1) for k in range(num_future)], 1)

    def reconstruct(self, frames):
        if self.reconstruct_noise is None:
            return None
        return frames + self.reconstruct_noise * torch.ones_like(frames)


def _run(model, dataset, tmp_path=None, **kw):
    kw.setdefault("num_visualize", 0 if tmp_path is None else 4)
    return evaluate_frames(model, dataset, context_frames=TC, future_frames=TF, batch_size=4,
                           out_dir=tmp_path, progress=False, **kw)


def _per_frame_sq_sum(x):
    return (x.double() ** 2).flatten(2).sum(-1)  # (N, T)


def test_oracle_is_perfect(sequences, dataset):
    m = _run(OracleModel(sequences), dataset)
    assert m["test/mse"] == 0.0 and m["test/mae"] == 0.0
    assert m["test/ssim"] == pytest.approx(1.0, abs=1e-5)
    assert m["test/psnr"] == 100.0
    assert m["test/num_sequences"] == 6.0


def test_copy_last_matches_numpy(sequences, dataset):
    m = _run(ZeroModel(), dataset)
    x = sequences.numpy().astype(np.float64)
    future, last = x[:, TC:], x[:, TC - 1:TC]
    per_frame = ((future - last) ** 2).reshape(6, TF, -1).sum(-1)
    assert m["test/copy_last/mse"] == pytest.approx(per_frame.mean(), rel=1e-5)
    assert m["test/copy_last/mse/step_03"] == pytest.approx(per_frame[:, 2].mean(), rel=1e-5)
    per_frame_abs = np.abs(future - last).reshape(6, TF, -1).sum(-1)
    assert m["test/copy_last/mae"] == pytest.approx(per_frame_abs.mean(), rel=1e-5)


def test_zeros_baseline_and_zero_model(sequences, dataset):
    m = _run(ZeroModel(), dataset)
    expected = _per_frame_sq_sum(sequences[:, TC:]).mean().item()
    assert m["test/zeros/mse"] == pytest.approx(expected, rel=1e-5)
    for key in [k for k in m if k.startswith("test/zeros/")]:
        assert m[key.replace("test/zeros/", "test/")] == m[key], key
    # the baselines really are different predictors
    assert m["test/copy_last/mse"] != pytest.approx(m["test/zeros/mse"], rel=1e-3)


class AlternatingModel(OracleModel):
    """A 'stochastic' model whose draws alternate: the true future, then black frames."""

    calls = 0

    def rollout(self, context, num_future):
        self.calls += 1
        if self.calls % 2:
            return super().rollout(context, num_future)
        return torch.zeros(context.shape[0], num_future, *context.shape[2:])


def test_num_samples_reports_the_mean_and_the_best_of_k(sequences, dataset):
    model = AlternatingModel(sequences)
    m = _run(model, dataset, num_samples=2)
    assert model.calls == 4  # 6 sequences in batches of 4: 2 batches x 2 samples
    assert m["test/num_samples"] == 2.0 and m["test/num_sequences"] == 6.0
    assert m["test/mse"] == pytest.approx(m["test/zeros/mse"] / 2, rel=1e-6)  # mean of 0 and the zeros MSE
    assert m["test/best_of_k/mse"] == 0.0 and m["test/best_of_k/ssim"] == pytest.approx(1.0, abs=1e-5)
    assert "test/best_of_k/mse" not in _run(ZeroModel(), dataset)
    with pytest.raises(ValueError, match="num_samples"):
        _run(ZeroModel(), dataset, num_samples=0)


class CyclingModel(OracleModel):
    """Draws cycle: the truth, the truth, black frames; ``deterministic`` as set."""

    def __init__(self, sequences, deterministic: bool = False):
        super().__init__(sequences)
        self.calls, self.deterministic = 0, deterministic

    def rollout(self, context, num_future):
        self.calls += 1
        if self.calls % 3:
            return super().rollout(context, num_future)
        return torch.zeros(context.shape[0], num_future, *context.shape[2:])


def test_median_of_samples_is_scored_and_the_samples_beside_it(sequences, dataset, tmp_path):
    # 2 of 3 draws are the truth: the per-pixel median is the truth, the mean a third darker
    m = _run(CyclingModel(sequences), dataset, tmp_path, num_samples=3, point_estimate="median")
    assert m["test/mse"] == 0.0 and m["test/ssim"] == pytest.approx(1.0, abs=1e-5)
    assert m["test/sample/mse"] == pytest.approx(m["test/zeros/mse"] / 3, rel=1e-6)
    assert m["test/best_of_k/mse"] == 0.0 and m["test/num_samples"] == 3.0
    future = sequences[:, TC:].double()
    mean = _run(CyclingModel(sequences), dataset, num_samples=3, point_estimate="mean")
    assert mean["test/mse"] == pytest.approx(_per_frame_sq_sum(future / 3).mean().item(), rel=1e-5)
    assert "test/sample/mse" not in _run(CyclingModel(sequences), dataset, num_samples=3)
    assert (tmp_path / "predictions.png").is_file()


def test_point_estimate_needs_samples_and_a_known_name(sequences, dataset):
    with pytest.raises(ValueError, match="num_samples >= 2"):
        _run(ZeroModel(), dataset, point_estimate="median")
    with pytest.raises(ValueError, match="point_estimate"):
        _run(ZeroModel(), dataset, num_samples=3, point_estimate="mode")


def test_a_deterministic_model_is_rolled_out_once(sequences, dataset):
    model = CyclingModel(sequences, deterministic=True)
    m = _run(model, dataset, num_samples=3, point_estimate="median")
    assert model.calls == 2 and m["test/num_samples"] == 1.0  # 2 batches, one draw each
    assert "test/sample/mse" not in m and "test/best_of_k/mse" not in m


def test_per_step_keys_average_to_overall(dataset):
    m = _run(ShiftModel(), dataset)
    for prefix in ("test/", "test/copy_last/", "test/zeros/"):
        for name in METRICS:
            steps = [m[f"{prefix}{name}/step_{k:02d}"] for k in range(1, TF + 1)]
            assert f"{prefix}{name}/step_{TF + 1:02d}" not in m
            assert np.mean(steps) == pytest.approx(m[f"{prefix}{name}"], rel=1e-9)
    # the shifted prediction drifts further from the truth with each step
    assert m["test/mse/step_01"] != m["test/mse/step_03"]
    assert all(isinstance(v, float) for v in m.values())


def test_rgb_equals_gray(sequences, as_dataset):
    gray = _run(ShiftModel(), as_dataset(sequences))
    rgb = _run(ShiftModel(), as_dataset(sequences.expand(-1, -1, 3, -1, -1).contiguous()))
    assert gray.keys() == rgb.keys()
    for k in gray:
        assert rgb[k] == pytest.approx(gray[k], rel=1e-5, abs=1e-5), k


def test_files_written(tmp_path, dataset):
    m = _run(ShiftModel(reconstruct_noise=0.05), dataset, tmp_path, extra_metrics={"step": 7})
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == m
    assert list(on_disk) == sorted(on_disk)
    assert on_disk["step"] == 7
    assert all(math.isfinite(v) for v in on_disk.values())
    with Image.open(tmp_path / "predictions.gif") as gif:
        assert gif.n_frames == TC + TF
        assert gif.size == gif_size(4, 16, 16)
        assert gif.info.get("loop") == 0
    with Image.open(tmp_path / "predictions.png") as png:
        assert png.size == grid_size(4, TC, TF, 16, 16)
    assert "copy_last" in summarize(m)


def test_max_sequences_and_batch_size(sequences, as_dataset, dataset):
    first4 = _run(ShiftModel(), as_dataset(sequences[:4]))
    limited = _run(ShiftModel(), dataset, max_sequences=4)
    assert limited["test/num_sequences"] == 4.0
    assert limited == pytest.approx(first4, rel=1e-6)
    full = _run(ShiftModel(), dataset)
    assert full["test/mse"] != pytest.approx(limited["test/mse"], rel=1e-4)
    kw = dict(context_frames=TC, future_frames=TF, progress=False)
    b2 = evaluate_frames(ShiftModel(reconstruct_noise=0.1), dataset, batch_size=2, **kw)
    b6 = evaluate_frames(ShiftModel(reconstruct_noise=0.1), dataset, batch_size=6, **kw)
    assert b2.keys() == b6.keys()
    for k in b2:
        assert b2[k] == pytest.approx(b6[k], rel=1e-5, abs=1e-5), k


def test_tokenizer_metrics(sequences, dataset):
    assert not any(k.startswith("reconstruction/") for k in _run(ZeroModel(), dataset))
    assert not any(k.startswith("reconstruction/") for k in _run(ShiftModel(), dataset))  # returns None
    m = _run(ShiftModel(reconstruct_noise=0.1), dataset)
    recon = (sequences + 0.1).clamp(0, 1)
    expected = _per_frame_sq_sum(recon - sequences).mean().item()  # all T = TC + TF frames
    assert m["reconstruction/mse"] == pytest.approx(expected, rel=1e-5)
    assert {"reconstruction/psnr", "reconstruction/ssim"} <= m.keys()
    assert m["reconstruction/psnr"] < 100.0


def test_tokenizer_metrics_on_the_first_sequences_only(sequences, dataset):
    class Counting(ShiftModel):
        def reconstruct(self, frames):
            self.reconstructed = getattr(self, "reconstructed", 0) + frames.shape[0]
            return frames + 0.1 * torch.arange(1, frames.shape[0] + 1.0).view(-1, 1, 1, 1, 1)  # grows within a batch

    everything = _run(Counting(), dataset)
    model = Counting()
    m = _run(model, dataset, reconstruct_sequences=5)  # batches of 4: all of the first, one of the second
    assert model.reconstructed == 5 and m["reconstruction/num_sequences"] == 5 == len(sequences) - 1
    first = (sequences[:5] + 0.1 * torch.tensor([1.0, 2, 3, 4, 1]).view(-1, 1, 1, 1, 1)).clamp(0, 1)
    assert m["reconstruction/mse"] == pytest.approx(_per_frame_sq_sum(first - sequences[:5]).mean().item(), rel=1e-5)
    assert m["reconstruction/mse"] != pytest.approx(everything["reconstruction/mse"], rel=1e-3)
    assert everything["reconstruction/num_sequences"] == len(sequences)
    assert m["test/mse"] == everything["test/mse"]  # the rollouts are all scored either way
    with pytest.raises(ValueError, match="reconstruct_sequences"):
        _run(model, dataset, reconstruct_sequences=0)


def test_module_is_evaluated_in_eval_mode_and_restored(dataset):
    model = ShiftModel()
    model.train()
    _run(model, dataset)
    assert model.seen_training and not any(model.seen_training)
    assert model.training


def test_bad_input_raises(sequences, as_dataset, dataset):
    with pytest.raises(ValueError, match=r"'frames'.*T=8"):
        evaluate_frames(ZeroModel(), dataset, context_frames=4, future_frames=3, progress=False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        _run(ZeroModel(), as_dataset(sequences * 255))

    class Wrong:
        def rollout(self, context, num_future):
            return context[:, :1]

    with pytest.raises(ValueError, match="rollout"):
        _run(Wrong(), dataset)
    with pytest.raises(TypeError, match="rollout"):
        _run(object(), dataset)
    with pytest.raises(ValueError, match="collide"):
        _run(ZeroModel(), dataset, extra_metrics={"test/mse": 1.0})


def test_fvd_scores_whole_clips_for_the_model_and_copy_last(as_dataset):
    from conftest import make_sequences
    from futurelat.evaluation.fvd import FrechetVideoDistance
    from futurelat.evaluation.i3d import InceptionI3d

    torch.manual_seed(0)
    sequences = make_sequences(n=6, t=10)  # 10 frames: I3D needs >= 9
    fvd = FrechetVideoDistance(InceptionI3d(), resize_to=32)
    kw = dict(context_frames=5, future_frames=5, batch_size=4, progress=False)
    oracle = evaluate_frames(OracleModel(sequences, tc=5), as_dataset(sequences), fvd=fvd, **kw)
    assert oracle["test/fvd"] == pytest.approx(0.0, abs=1e-6)  # predicted clips = the real clips
    assert oracle["test/copy_last/fvd"] > 1e-3
    fvd.reset()
    zeros = evaluate_frames(ZeroModel(), as_dataset(sequences), fvd=fvd, **kw)
    assert zeros["test/fvd"] > 1e-3 and zeros["test/copy_last/fvd"] == pytest.approx(oracle["test/copy_last/fvd"])
    short = _run(ZeroModel(), as_dataset(make_sequences(n=6, t=8)), fvd=fvd)  # 8 frames: skipped
    assert "test/fvd" not in short and "test/copy_last/fvd" not in short


def test_codebook_usage_and_perplexity_of_a_discrete_backbone(dataset):
    from types import SimpleNamespace

    class Discrete(ShiftModel):
        spec = SimpleNamespace(codebook_size=4)

        def encode(self, frames):  # codes 0 and 1 only, equally often: half the codebook, perplexity 2
            codes = torch.arange(frames.shape[0] * 2).remainder(2).view(-1, 2)
            return SimpleNamespace(codes=codes)

    m = _run(Discrete(reconstruct_noise=0.1), dataset)
    assert m["reconstruction/codebook_usage"] == 0.5
    assert m["reconstruction/perplexity"] == pytest.approx(2.0)
    assert "reconstruction/codebook_usage" not in _run(ShiftModel(reconstruct_noise=0.1), dataset)


def test_sharpness_of_predictions_and_reconstructions(sequences, dataset):
    from futurelat.evaluation.metrics import sharpness_ratio

    class Blurry(ShiftModel):
        def reconstruct(self, frames):
            return torch.nn.functional.avg_pool3d(frames.transpose(1, 2), (1, 3, 3), 1, (0, 1, 1)).transpose(1, 2)

    m = _run(Blurry(), dataset)
    assert m["reconstruction/sharpness"] == pytest.approx(
        sharpness_ratio(Blurry().reconstruct(sequences), sequences), rel=1e-5)
    assert m["reconstruction/sharpness"] < 0.5  # a 3x3 box blur removes most high-frequency energy
    shifted = ShiftModel().rollout(sequences[:, :TC], TF).detach()
    assert m["test/sharpness"] == pytest.approx(sharpness_ratio(shifted, sequences[:, TC:]), rel=1e-5)
