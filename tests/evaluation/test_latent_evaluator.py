"""futurelat.evaluation.latent_evaluator.evaluate_latents with a hand-checkable fake model and a tiny real one."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import torch
from einops import rearrange
from PIL import Image

from futurelat.evaluation.latent_evaluator import (
    PICTURE_FILE,
    FramesBaseline,
    evaluate_latents,
    latent_metric_keys,
    summarize_latents,
)
from futurelat.evaluation.results import best_of_k
from futurelat.evaluation.latent_metrics import latent_metrics
from futurelat.evaluation.latent_visualize import (
    BORDER,
    CELL_SIZE,
    CONTEXT_GAP,
    LABEL_WIDTH,
    LINE_HEIGHT,
    SEPARATOR,
    latent_grid_size,
)
from futurelat.models.base import Latents, LatentSpec

# Fake model: 8 frames of 4x4 pixels; 2 frames per latent frame; 2x2 tokens of D = 4 (the patch's pixels).
S, T, SIZE, STEP = 6, 8, 4, 2
TC, TF = 2, 2  # latent frames
SPEC = LatentSpec(latent_dim=4, grid=(2, 2), temporal_downsample=STEP)
METRICS = ("l1", "mse", "cosine")


def encode(frames: torch.Tensor) -> torch.Tensor:
    """``(B, 8, 1, 4, 4)`` → ``(B, 4, 4, 4)``: mean of frame pairs, 2x2 patches flattened."""
    x = rearrange(frames, "b (t s) c (h p) (w q) -> b t (h w) (c p q) s", s=STEP, p=2, q=2)
    return x.mean(-1)


class FakeHead:
    """``rollout`` returns ``predict(context_latents, num_future)`` and counts its calls."""

    def __init__(self, predict):
        self.predict = predict
        self.calls = 0

    def rollout(self, context: Latents, num_future: int) -> Latents:
        self.calls += 1
        return Latents(self.predict(context.latents, num_future))


class FakeModel(torch.nn.Module):
    def __init__(self, predict):
        super().__init__()
        self.spec = SPEC
        self.head = FakeHead(predict)
        self.seen_training = []

    def encode(self, frames):
        self.seen_training.append(self.training)
        return Latents(encode(frames))


class FramesData(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _frames(seed: int = 0) -> torch.Tensor:
    return torch.rand(S, T, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _oracle(latents: torch.Tensor):
    """A predictor that looks the context up among known latents ``(S, T', N, D)`` and returns its future."""
    def predict(context, num_future):
        rows = [(latents[:, :TC] == c).flatten(1).all(1).nonzero()[0, 0] for c in context]
        return latents[torch.stack(rows), TC:TC + num_future]
    return predict


def _halve_last(context, num_future):
    return 0.5 * context[:, -1:].expand(-1, num_future, -1, -1)


def _run(model, dataset, **kw):
    kw.setdefault("num_visualize", 0)
    return evaluate_latents(model, dataset, context_latents=TC, future_latents=TF, batch_size=4,
                            progress=False, **kw)


def _expected(prediction: torch.Tensor, target: torch.Tensor) -> dict[str, np.ndarray]:
    """Per (sequence, step) metrics by plain numpy: ``(S, Tf', N, D)`` ×2 → ``{name: (S, Tf')}``."""
    p, t = prediction.double().numpy(), target.double().numpy()
    cos = (p * t).sum(-1) / np.maximum(np.linalg.norm(p, axis=-1) * np.linalg.norm(t, axis=-1), 1e-12)
    return {"l1": np.abs(p - t).mean((-2, -1)), "mse": ((p - t) ** 2).mean((-2, -1)), "cosine": cos.mean(-1)}


def test_a_perfect_head_scores_perfectly_and_copy_last_matches_numpy():
    frames = _frames()
    latents = encode(frames)
    m = _run(FakeModel(_oracle(latents)), FramesData([{"frames": f} for f in frames]))
    assert m["test/l1"] == 0.0 and m["test/mse"] == 0.0
    assert m["test/cosine"] == pytest.approx(1.0, abs=1e-6)
    assert m["test/num_sequences"] == 6.0 and m["test/num_samples"] == 1.0
    ref = _expected(latents[:, TC - 1:TC].expand(-1, TF, -1, -1), latents[:, TC:])
    for name in METRICS:
        assert m[f"test/copy_last/{name}"] == pytest.approx(ref[name].mean(), rel=1e-5)
        for k in range(TF):
            assert m[f"test/copy_last/{name}/step_{k + 1:02d}"] == pytest.approx(ref[name][:, k].mean(), rel=1e-5)
    assert m["test/copy_last/cosine"] < 0.99  # random frames: the last context frame is not the future


def test_metric_values_and_per_step_keys():
    frames = _frames(1)
    latents = encode(frames)
    m = _run(FakeModel(_halve_last), FramesData([{"frames": f} for f in frames]))
    ref = _expected(0.5 * latents[:, TC - 1:TC].expand(-1, TF, -1, -1), latents[:, TC:])
    assert set(m) == {k for k in latent_metric_keys(TF) if "best_of_k" not in k and "/sample/" not in k}
    for name in METRICS:
        steps = [m[f"test/{name}/step_{k:02d}"] for k in range(1, TF + 1)]
        np.testing.assert_allclose(steps, ref[name].mean(0), rtol=1e-5)
        assert m[f"test/{name}"] == pytest.approx(np.mean(steps), rel=1e-9)
        assert f"test/{name}/step_{TF + 1:02d}" not in m
    # halving changes L1/MSE but not the direction of the vectors: cosine equals copy-last's
    assert m["test/cosine"] == pytest.approx(m["test/copy_last/cosine"], rel=1e-6)
    assert m["test/l1"] != pytest.approx(m["test/copy_last/l1"], rel=1e-3)
    assert all(isinstance(v, float) for v in m.values())


def test_best_of_k_is_the_oracle_pick_and_not_worse_than_the_mean(tmp_path):
    frames = _frames(2)
    latents = encode(frames)
    truth = _oracle(latents)
    calls = []

    def alternating(context, num_future):  # draws: the truth, then zeros, then the truth, ...
        calls.append(1)
        return truth(context, num_future) if len(calls) % 2 else torch.zeros(context.shape[0], num_future, 4, 4)

    model = FakeModel(alternating)
    m = _run(model, FramesData([{"frames": f} for f in frames]), num_samples=2, out_dir=tmp_path, num_visualize=1)
    assert model.head.calls == 4  # 6 sequences in batches of 4: 2 batches x 2 samples
    with Image.open(tmp_path / PICTURE_FILE) as png:  # the picture shows the first draw (the truth)
        img = np.asarray(png.convert("RGB"))
    cell = 2 * (CELL_SIZE // 2) + 2 * BORDER  # grid (2, 2) upscaled to CELL_SIZE
    x = LABEL_WIDTH + SEPARATOR + TC * (cell + SEPARATOR) + CONTEXT_GAP + BORDER  # first future column
    y_true = LINE_HEIGHT + SEPARATOR + BORDER
    true_cell = img[y_true:y_true + cell - 2 * BORDER, x:x + cell - 2 * BORDER]
    pred_cell = img[y_true + cell:y_true + 2 * cell - 2 * BORDER, x:x + cell - 2 * BORDER]
    assert np.array_equal(true_cell, pred_cell) and true_cell.std() > 0
    zeros = _expected(torch.zeros_like(latents[:, TC:]), latents[:, TC:])
    assert m["test/l1"] == pytest.approx(zeros["l1"].mean() / 2, rel=1e-5)  # mean of 0 and the zeros' L1
    assert m["test/best_of_k/l1"] == 0.0 and m["test/best_of_k/cosine"] == pytest.approx(1.0, abs=1e-6)
    assert m["test/num_samples"] == 2.0

    noisy = FakeModel(lambda c, n: truth(c, n) + 0.3 * torch.randn(c.shape[0], n, 4, 4))
    torch.manual_seed(0)
    m = _run(noisy, FramesData([{"frames": f} for f in frames]), num_samples=3)
    assert m["test/best_of_k/l1"] < m["test/l1"]
    assert "test/best_of_k/l1" not in _run(FakeModel(_halve_last), FramesData([{"frames": f} for f in frames]))


def test_the_median_of_sampled_latents_is_scored_beside_the_samples():
    frames = _frames(2)
    latents = encode(frames)
    truth, calls = _oracle(latents), []

    def mostly_right(context, num_future):  # draws: the truth, the truth, zeros, ...
        calls.append(1)
        return truth(context, num_future) if len(calls) % 3 else torch.zeros(context.shape[0], num_future, 4, 4)

    data = FramesData([{"frames": f} for f in frames])
    m = _run(FakeModel(mostly_right), data, num_samples=3, point_estimate="median")
    zeros = _expected(torch.zeros_like(latents[:, TC:]), latents[:, TC:])
    assert m["test/l1"] == 0.0 and m["test/best_of_k/l1"] == 0.0
    assert m["test/sample/l1"] == pytest.approx(zeros["l1"].mean() / 3, rel=1e-5)
    with pytest.raises(ValueError, match="num_samples >= 2"):
        _run(FakeModel(mostly_right), data, point_estimate="mean")


def test_best_of_k_helper_picks_per_sequence():
    a = {"l1": torch.tensor([[1.0, 1.0], [0.0, 0.0]]), "cosine": torch.tensor([[0.1, 0.1], [0.9, 0.9]])}
    b = {"l1": torch.tensor([[0.5, 0.5], [2.0, 2.0]]), "cosine": torch.tensor([[0.8, 0.8], [0.2, 0.2]])}
    best = best_of_k([a, b], "l1")
    assert torch.equal(best["l1"], torch.tensor([[0.5, 0.5], [0.0, 0.0]]))
    assert torch.equal(best["cosine"], torch.tensor([[0.8, 0.8], [0.9, 0.9]]))
    assert torch.equal(best_of_k([a, b], "cosine", higher_is_better=True)["l1"], best["l1"])
    with pytest.raises(ValueError, match="'mse'"):
        best_of_k([a, b], "mse")


def test_cached_latents_match_encoded_frames_and_skip_frame_baselines(caplog):
    frames = _frames(3)
    latents = encode(frames)
    seen = []

    def vjepa_like(context_frames, num_future):  # stands in for backbone.predict_future
        seen.append(tuple(context_frames.shape))
        return 2.0 * encode(context_frames)[:, -1:].expand(-1, num_future, -1, -1)

    baselines = {"predictor": FramesBaseline(vjepa_like),
                 "mean_context": lambda inputs: inputs.context.latents.mean(1, keepdim=True).expand(
                     -1, inputs.num_future, -1, -1)}
    from_frames = _run(FakeModel(_halve_last), FramesData([{"frames": f} for f in frames]),
                       extra_baselines=baselines)
    assert seen == [(4, TC * STEP, 1, SIZE, SIZE), (2, TC * STEP, 1, SIZE, SIZE)]  # context frames only
    ref = _expected(2.0 * latents[:, TC - 1:TC].expand(-1, TF, -1, -1), latents[:, TC:])
    for name in METRICS:
        assert from_frames[f"test/predictor/{name}"] == pytest.approx(ref[name].mean(), rel=1e-5)
    ref = _expected(latents[:, :TC].mean(1, keepdim=True).expand(-1, TF, -1, -1), latents[:, TC:])
    assert from_frames["test/mean_context/l1"] == pytest.approx(ref["l1"].mean(), rel=1e-5)
    assert "predictor" in summarize_latents(from_frames)

    with caplog.at_level(logging.WARNING, logger="futurelat.evaluation.latent_evaluator"):
        cached = _run(FakeModel(_halve_last), FramesData([{"latents": z, "index": i} for i, z in enumerate(latents)]),
                      extra_baselines=baselines)
    assert "predictor" in caplog.text
    assert not any(k.startswith("test/predictor/") for k in cached)
    assert cached == pytest.approx({k: v for k, v in from_frames.items() if not k.startswith("test/predictor/")})
    assert len(seen) == 2  # not called on cached latents

    both = _run(FakeModel(_halve_last), FramesData([{"latents": z, "frames": f} for z, f in zip(latents, frames)]),
                extra_baselines=baselines)
    assert both == pytest.approx(from_frames)


def test_cached_codes_reach_the_head_and_code_predictions_are_embedded():
    latents = encode(_frames(4))
    codes = torch.arange(S * 4 * 4).reshape(S, 4, 4) % 7
    table = torch.randn(7, 4, generator=torch.Generator().manual_seed(0))
    got = []

    class CodeHead:  # a token prior: reads codes, returns codes and empty latents
        def rollout(self, context, num_future):
            got.append(context.codes)
            b, _, n = context.codes.shape
            return Latents(torch.zeros(b, num_future, n, 0), context.codes[:, -1:].expand(-1, num_future, -1))

    class Backbone:
        def embed_codes(self, c):
            return table[c]

    model = FakeModel(None)
    model.head, model.backbone = CodeHead(), Backbone()
    m = _run(model, FramesData([{"latents": z, "codes": c} for z, c in zip(latents, codes)]))
    assert torch.equal(torch.cat(got), codes[:, :TC])
    ref = _expected(table[codes[:, TC - 1:TC].expand(-1, TF, -1)], latents[:, TC:])
    assert m["test/mse"] == pytest.approx(ref["mse"].mean(), rel=1e-5)


def test_files_written_and_picture_size(tmp_path):
    frames = _frames(5)
    m = _run(FakeModel(_halve_last), FramesData([{"frames": f} for f in frames]), out_dir=tmp_path / "out",
             num_visualize=5, extra_metrics={"step": 7})
    on_disk = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert on_disk == m and list(on_disk) == sorted(on_disk) and on_disk["step"] == 7
    assert all(math.isfinite(v) for v in on_disk.values())
    with Image.open(tmp_path / "out" / PICTURE_FILE) as png:
        assert png.size == latent_grid_size(5, TC, TF, SPEC.grid, rows=3)
    _run(FakeModel(_halve_last), FramesData([{"frames": f} for f in frames]), out_dir=tmp_path / "none")
    assert (tmp_path / "none" / "metrics.json").exists() and not (tmp_path / "none" / PICTURE_FILE).exists()


def test_module_mode_max_sequences_and_batch_size():
    frames = _frames(6)
    model = FakeModel(_halve_last)
    model.train()
    full = _run(model, FramesData([{"frames": f} for f in frames]))
    assert model.seen_training and not any(model.seen_training) and model.training
    first4 = _run(model, FramesData([{"frames": f} for f in frames[:4]]))
    limited = _run(model, FramesData([{"frames": f} for f in frames]), max_sequences=4)
    assert limited == pytest.approx(first4) and limited["test/num_sequences"] == 4.0
    assert full["test/l1"] != pytest.approx(limited["test/l1"], rel=1e-4)
    one_batch = evaluate_latents(model, FramesData([{"frames": f} for f in frames]), context_latents=TC,
                                 future_latents=TF, batch_size=6, progress=False, num_visualize=0)
    assert one_batch == pytest.approx(full)


def test_bad_inputs_raise():
    frames = _frames()
    data = FramesData([{"frames": f} for f in frames])
    with pytest.raises(ValueError, match=r"'frames'.*T=8"):
        evaluate_latents(FakeModel(_halve_last), data, context_latents=2, future_latents=1, progress=False)
    with pytest.raises(ValueError, match=r"\['latents'\].*N=4"):
        _run(FakeModel(_halve_last), FramesData([{"latents": torch.zeros(4, 3, 4)}]))
    with pytest.raises(ValueError, match="rollout"):
        _run(FakeModel(lambda c, n: c[:, :1]), data)  # one frame, not Tf'=2
    with pytest.raises(TypeError, match="head.rollout"):
        _run(object(), data)
    with pytest.raises(ValueError, match="copy_last"):
        _run(FakeModel(_halve_last), data, extra_baselines={"copy_last": lambda inputs: None})
    with pytest.raises(ValueError, match="collide"):
        _run(FakeModel(_halve_last), data, extra_metrics={"test/l1": 1.0})
    with pytest.raises(ValueError, match="different keys"):
        _run(FakeModel(_halve_last), FramesData([{"frames": frames[0]}, {"latents": encode(frames[:1])[0]}]))
    with pytest.raises(ValueError, match=r"extra_baselines\['bad'\]"):
        _run(FakeModel(_halve_last), data, extra_baselines={"bad": lambda inputs: inputs.context.latents[:, :1]})
    with pytest.raises(ValueError, match="same shape"):
        latent_metrics(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 5))


def test_tiny_real_model(sequences, dataset, tmp_path):
    """A real VQ-VAE + transformer regression head: the latent path runs end to end and copy-last is exact."""
    from futurelat.models.backbones.vqvae import VQVAE
    from futurelat.models.latent_video_model import LatentVideoModel
    from futurelat.registry import HEADS

    torch.manual_seed(0)
    backbone = VQVAE(in_channels=1, hidden_channels=8, latent_dim=8, codebook_size=16, kmeans_init=False).freeze()
    spec = backbone.latent_spec((16, 16))
    head = HEADS.get("transformer")(spec, 8, objective="regression", context_latents=5, d_model=32, num_layers=1)
    model = LatentVideoModel(backbone, head, spec)
    m = evaluate_latents(model, dataset, context_latents=5, future_latents=3, batch_size=4, progress=False,
                         out_dir=tmp_path, num_visualize=2)
    z = model.encode(sequences).latents
    ref = _expected(z[:, 4:5].expand(-1, 3, -1, -1), z[:, 5:])
    assert m["test/copy_last/l1"] == pytest.approx(ref["l1"].mean(), rel=1e-5)
    assert all(math.isfinite(v) for v in m.values()) and m["test/l1"] > 0
    with Image.open(tmp_path / PICTURE_FILE) as png:
        assert png.size == latent_grid_size(2, 5, 3, spec.grid, rows=3)
