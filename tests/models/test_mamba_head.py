"""Tests of the ``mamba`` head (futurelat/models/heads/mamba.py, trunks/mamba.py, mamba_layers.py, sampling.py)."""

from __future__ import annotations

import importlib.util
import logging

import pytest
import torch

from futurelat.models.base import LatentSpec, Latents
from futurelat.models.heads.mamba import MambaHead
from futurelat.models.heads import mamba_layers
from futurelat.models.heads.mamba_layers import Mamba2Mixer, causal_depthwise_conv, resolve_backend, ssd_chunk_scan
from futurelat.models.heads.sampling import sample_codes, sampling_options
from futurelat.registry import HEADS

from head_checks import (assert_bar_rolled_out, assert_causal, assert_rejects_bad_codes, assert_steps_match_parallel,
                         make_head)

# (ordering, patch_size): the frame ordering with and without patches of codes, and the token ordering.
VARIANTS = [("frame", 1), ("frame", 2), ("token", 1)]
SPEC = LatentSpec(latent_dim=8, grid=(4, 4), codebook_size=16)


def tiny_head(ordering: str = "frame", patch_size: int = 1, spec: LatentSpec = SPEC, **kwargs) -> MambaHead:
    torch.manual_seed(0)
    config = dict(ordering=ordering, patch_size=patch_size, d_model=32, num_layers=2, d_state=8, expand=2,
                  head_dim=16, conv_kernel=4, spatial_kernel=3, chunk_size=8, backend="torch",
                  input_noise=0.0, static_keep=1.0, sampling=None)  # plain teacher forcing on every code, greedy rollouts
    config.update(kwargs)
    return make_head("mamba", spec, 6, **config)


def random_codes(batch: int = 2, frames: int = 6, spec: LatentSpec = SPEC, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, spec.codebook_size, (batch, frames, spec.tokens_per_frame), generator=g)


def as_latents(codes: torch.Tensor) -> Latents:
    return Latents(latents=torch.zeros(*codes.shape, 0), codes=codes)


# ------------------------------------------------------------------------------ the scan


def test_chunked_scan_matches_sequential_recurrence():
    torch.manual_seed(0)
    b, l, h, p, n = 2, 13, 3, 4, 5
    x, B, C = torch.randn(b, l, h, p), torch.randn(b, l, n), torch.randn(b, l, n)
    dt, A, state = torch.rand(b, l, h), -torch.rand(h) * 2, torch.randn(b, h, p, n)
    s, ys = state.clone(), []
    for t in range(l):  # s_t = exp(dt A) s_{t-1} + dt x_t B_t^T ; y_t = s_t C_t
        update = torch.einsum("bhp,bn->bhpn", x[:, t] * dt[:, t, :, None], B[:, t])
        s = s * torch.exp(dt[:, t] * A)[:, :, None, None] + update
        ys.append(torch.einsum("bhpn,bn->bhp", s, C[:, t]))
    for chunk in (1, 4, 13, 64):  # several chunks with padding, one chunk, chunk > length
        y, final = ssd_chunk_scan(x, dt, A, B, C, chunk, initial_state=state)
        torch.testing.assert_close(y, torch.stack(ys, 1), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(final, s, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kernel,bias", [(4, True), (1, True), (3, False)])
def test_causal_depthwise_conv_matches_conv1d_and_its_gradients(kernel, bias):
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(6, 6, kernel, groups=6, bias=bias)
    x = torch.randn(3, kernel - 1 + 5, 6, requires_grad=True)
    ours = causal_depthwise_conv(x, conv.weight, conv.bias)
    ref = torch.nn.functional.conv1d(x.transpose(1, 2), conv.weight, conv.bias, groups=6).transpose(1, 2)
    assert ours.shape == (3, 5, 6)
    torch.testing.assert_close(ours, ref)
    inputs = [x, conv.weight] + ([conv.bias] if bias else [])
    grads = torch.autograd.grad((ours * ref.detach()).sum(), inputs)
    ref_grads = torch.autograd.grad((ref * ref.detach()).sum(), inputs)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r)


def test_mixer_step_and_split_forward_match_full_forward():
    torch.manual_seed(0)
    mixer = Mamba2Mixer(16, d_state=8, expand=2, head_dim=8, conv_kernel=4, chunk_size=4, backend="torch")
    u = torch.randn(3, 11, 16)
    full, final = mixer(u)
    state, outs = mixer.init_state(3), []
    for t in range(11):
        out, state = mixer.step(u[:, t], state)
        outs.append(out)
    torch.testing.assert_close(torch.stack(outs, 1), full, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(state.ssm, final.ssm, atol=1e-5, rtol=1e-4)
    first, mid = mixer(u[:, :5])
    second, _ = mixer(u[:, 5:], mid)  # parallel prefill continued from a state
    torch.testing.assert_close(torch.cat([first, second], 1), full, atol=1e-5, rtol=1e-4)


def test_backend_choice():
    assert Mamba2Mixer(16, head_dim=8, backend="torch").backend == "torch"
    if importlib.util.find_spec("mamba_ssm") is None:
        assert Mamba2Mixer(16, head_dim=8, backend="auto").backend == "torch"
        with pytest.raises(ImportError, match="mamba-ssm"):
            Mamba2Mixer(16, head_dim=8, backend="mamba_ssm")
    with pytest.raises(ValueError, match="head.params.backend"):
        Mamba2Mixer(16, head_dim=8, backend="cuda")


def _kernel(outcome):
    """A stand-in for ``_import_mamba_ssm_scan``: returns a kernel, or raises ``outcome``."""
    def load():
        if isinstance(outcome, Exception):
            raise outcome
        return lambda *args, **kwargs: None
    return load


@pytest.fixture
def fresh_log(monkeypatch, caplog):
    """The once-per-process scan log emptied for one test; INFO records of mamba_layers captured."""
    monkeypatch.setattr(mamba_layers, "_announced", set())
    caplog.set_level(logging.INFO, logger=mamba_layers.__name__)
    return caplog


MISSING = ModuleNotFoundError("No module named 'mamba_ssm'")
REINSTALL = "(re)install mamba-ssm (pip install 'futurelat[cuda]') for the fused kernel"


@pytest.mark.parametrize("outcome,cuda,backend,message,level", [
    (MISSING, False, "torch", "mamba scan: torch (mamba_ssm not installed: No module named 'mamba_ssm')", "INFO"),
    (MISSING, True, "torch", "mamba scan: torch (mamba_ssm not installed: No module named 'mamba_ssm') on a CUDA "
     f"machine: {REINSTALL}", "WARNING"),
    (RuntimeError("libcudart.so.12: cannot open"), True, "torch",
     f"mamba scan: torch (mamba_ssm failed to import: RuntimeError: libcudart.so.12: cannot open) on a CUDA machine: "
     f"{REINSTALL}", "WARNING"),
    ("kernel", False, "torch", "mamba scan: torch (mamba_ssm installed, but CUDA is not available)", "INFO"),
    ("kernel", True, "mamba_ssm", "mamba scan: mamba_ssm (CUDA kernels; CPU tensors use the torch scan)", "INFO"),
])
def test_auto_backend_says_once_which_scan_runs_and_why(monkeypatch, fresh_log, outcome, cuda, backend, message,
                                                        level):
    monkeypatch.setattr(mamba_layers, "_import_mamba_ssm_scan", _kernel(outcome))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert [resolve_backend("auto") for _ in range(3)] == [backend] * 3  # e.g. three layers
    assert [(r.levelname, r.getMessage()) for r in fresh_log.records] == [(level, message)]


def test_a_head_of_many_layers_logs_its_scan_once(monkeypatch, fresh_log):
    monkeypatch.setattr(mamba_layers, "_import_mamba_ssm_scan", _kernel(MISSING))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    head = tiny_head(backend="auto", num_layers=3)
    assert head.backend == "torch" and all(b.temporal.backend == "torch" for b in head.blocks)
    assert [r.getMessage() for r in fresh_log.records] == [
        "mamba scan: torch (mamba_ssm not installed: No module named 'mamba_ssm')"]


def test_explicit_mamba_ssm_backend_without_the_package_is_an_error(monkeypatch, fresh_log):
    monkeypatch.setattr(mamba_layers, "_import_mamba_ssm_scan", _kernel(MISSING))
    with pytest.raises(ImportError) as err:
        Mamba2Mixer(16, head_dim=8, backend="mamba_ssm")
    assert "head.params.backend='mamba_ssm' needs the mamba-ssm CUDA kernels" in str(err.value)
    assert "mamba_ssm not installed: No module named 'mamba_ssm'" in str(err.value)
    assert "backend='torch'" in str(err.value)


# ----------------------------------------------------------- recurrent state == parallel


@pytest.mark.parametrize("ordering,patch_size", VARIANTS)
def test_recurrent_steps_match_teacher_forced_logits(ordering, patch_size):
    head = tiny_head(ordering, patch_size).eval()
    codes = random_codes()
    parallel = assert_steps_match_parallel(head, codes, ordering)
    if ordering == "token":  # a flat prefix ending mid-frame
        with torch.no_grad():
            mid, _ = head.prefill(codes.flatten(1)[:, :2 * codes.shape[2] + 5])
        torch.testing.assert_close(mid, parallel[:, 2, 5:6], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("ordering,patch_size", VARIANTS)
def test_causality(ordering, patch_size):
    assert_causal(tiny_head(ordering, patch_size).eval(), random_codes(), ordering)


# ---------------------------------------------------------------------------- rollouts


@pytest.mark.parametrize("ordering,patch_size", VARIANTS)
def test_rollout_shapes_and_greedy_determinism(ordering, patch_size):
    head = tiny_head(ordering, patch_size, sampling={"greedy": True})
    context = as_latents(random_codes(frames=3))
    out = head.rollout(context, 2)
    assert out.codes.shape == (2, 2, SPEC.tokens_per_frame) and out.codes.dtype == torch.int64
    assert out.latents.shape == (2, 2, SPEC.tokens_per_frame, 0) and out.latents.is_floating_point()
    assert 0 <= int(out.codes.min()) and int(out.codes.max()) < SPEC.codebook_size
    assert torch.equal(out.codes, head.rollout(context, 2).codes)
    assert head.training  # rollout restores the mode it found
    head.sampling = {"greedy": False, "top_k": 1, "temperature": 1.7}
    assert torch.equal(out.codes, head.rollout(context, 2).codes)  # top-1 sampling is greedy


@pytest.mark.parametrize("ordering", ["frame", "token"])
def test_temperature_sampling_is_reproducible_with_a_seed(ordering):
    head = tiny_head(ordering, sampling={"greedy": False, "temperature": 3.0})
    context = as_latents(random_codes(frames=2))
    draw = lambda seed: head.rollout(context, 2, generator=torch.Generator().manual_seed(seed)).codes  # noqa: E731
    assert torch.equal(draw(0), draw(0))
    assert not torch.equal(draw(0), draw(1))
    torch.manual_seed(5)
    first = head.rollout(context, 2).codes
    torch.manual_seed(5)
    assert torch.equal(first, head.rollout(context, 2).codes)  # global seed works too


def test_sample_codes_top_k_support_and_validation():
    logits = torch.tensor([[0.0, 3.0, 2.9, -1.0, 1.0]]).expand(500, 5)
    draws = sample_codes(logits, greedy=False, temperature=5.0, top_k=2, generator=torch.Generator().manual_seed(0))
    assert set(draws.tolist()) == {1, 2}
    assert sample_codes(logits[:1]).item() == 1
    with pytest.raises(ValueError, match="temperature"):
        sampling_options({"temperature": 0})
    with pytest.raises(ValueError, match="top_k"):
        sampling_options({"top_k": 0})
    with pytest.raises(ValueError, match="topk"):
        sampling_options({"topk": 5})


def test_sample_codes_draws_from_the_softmax():
    logits = torch.tensor([0.0, 1.0, -2.0, 2.0, 0.5])
    probs = torch.softmax(logits / 0.8, dim=0)
    draws = sample_codes(logits.expand(40_000, 5), greedy=False, temperature=0.8,
                         generator=torch.Generator().manual_seed(3))
    freq = torch.bincount(draws, minlength=5).float() / draws.numel()
    # 40k draws: the standard error of each frequency is below 0.0025
    assert torch.allclose(freq, probs, atol=0.01), (freq, probs)


# --------------------------------------------------------------------------- learning


def moving_bar_codes(num_clips: int = 8, frames: int = 12, width: int = 8) -> torch.Tensor:
    """Codes ``(B, T, 2 * width)`` of a vertical bar (code 1 on code 0) bouncing between the walls.

    Clip ``i`` starts at column ``i % width``, moving right for even ``i`` and left for odd ``i``.
    """
    clips = torch.zeros(num_clips, frames, 2, width, dtype=torch.int64)
    for i in range(num_clips):
        col, step = i % width, 1 if i % 2 == 0 else -1
        for t in range(frames):
            clips[i, t, :, col] = 1
            if not 0 <= col + step < width:
                step = -step
            col += step
    return clips.flatten(2)


def test_frame_head_learns_a_moving_bar_and_rolls_it_out():
    spec = LatentSpec(latent_dim=4, grid=(2, 8), codebook_size=4)
    codes = moving_bar_codes()
    head = tiny_head("frame", 1, spec=spec, num_layers=2)
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3)
    first = None
    for _ in range(100):
        out = head(as_latents(codes))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = out["loss"].item() if first is None else first
    assert out["loss"].item() < 0.05 * first
    future = head.rollout(as_latents(codes[:, :4]), 8).codes  # greedy, from 4 context frames
    assert_bar_rolled_out(future, codes[:, 4:])


def test_token_head_overfits_a_small_batch():
    codes = random_codes(batch=2, frames=2)
    head = tiny_head("token")
    opt = torch.optim.AdamW(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        out = head(as_latents(codes))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.2 * losses[0] and out["accuracy"] > 0.9
    assert set(out) == {"loss", "accuracy", "bits_per_token"}


# ------------------------------------------------------------------------- config errors


def test_registry_and_config_errors():
    assert HEADS.get("mamba") is MambaHead
    with pytest.raises(ValueError, match="discrete backbone"):
        make_head("mamba", LatentSpec(latent_dim=8, grid=(4, 4)), 6)
    with pytest.raises(ValueError, match="ordering"):
        tiny_head("pixel")
    with pytest.raises(ValueError, match="patch_size"):
        tiny_head("frame", 3)
    with pytest.raises(ValueError, match="spatial_kernel"):
        tiny_head(spatial_kernel=4)
    with pytest.raises(ValueError, match="sampling"):
        tiny_head(sampling={"greedy": True, "beam": 4})
    assert_rejects_bad_codes(tiny_head(), random_codes())


def test_input_noise_corrupts_inputs_only_in_training():
    torch.manual_seed(0)
    head = tiny_head("frame", input_noise=0.5)
    codes = torch.randint(0, SPEC.codebook_size, (2, 4, SPEC.tokens_per_frame))
    head.eval()
    clean = head(Latents(torch.empty(0), codes))["loss"]
    assert torch.equal(clean, head(Latents(torch.empty(0), codes))["loss"])  # eval: no noise
    head.train()
    torch.manual_seed(1)
    noisy = head(Latents(torch.empty(0), codes))["loss"]
    assert not torch.allclose(noisy, clean)
    with pytest.raises(ValueError, match="input_noise"):
        tiny_head("frame", input_noise=1.0)


# ---------------------------------------------------------------------------- regression

CONTINUOUS = LatentSpec(latent_dim=3, grid=(4, 4))


def moving_blob_latents(num_clips: int = 8, frames: int = 8) -> torch.Tensor:
    """Latents ``(B, T, 16, 3)`` on a 4x4 grid: a bright vector in one cell, moving one cell right per frame.

    Clip ``i`` starts in cell ``(i % 4, i % 4)``; columns wrap around. Background vectors are ``-1``.
    """
    clips = -torch.ones(num_clips, frames, 4, 4, 3)
    for i in range(num_clips):
        for t in range(frames):
            clips[i, t, i % 4, (i + t) % 4] = torch.tensor([2.0, 1.0, 3.0])
    return clips.flatten(2, 3)


def regression_head(**kwargs) -> MambaHead:
    return tiny_head("frame", 1, spec=CONTINUOUS, **{"objective": "regression", **kwargs})


def test_regression_recurrent_steps_match_the_parallel_forward():
    head = regression_head().eval()
    latents = torch.randn(2, 6, 16, 3)
    head.objective.standardizer.fit_once(latents)  # eval mode: does nothing, statistics stay (0, 1)
    assert not bool(head.objective.standardizer.fitted)
    with torch.no_grad():
        full = head.objective.predict(head.trunk, latents[:, :-1])  # (B, 5, N, D): predictions of frames 1..5
    pred, state = head.prefill(latents[:, :3])
    torch.testing.assert_close(pred, full[:, 2], atol=1e-5, rtol=1e-5)
    for t in (3, 4):
        pred, state = head.step(latents[:, t], state)
        torch.testing.assert_close(pred, full[:, t], atol=1e-5, rtol=1e-5)


def test_regression_learns_a_moving_blob_and_beats_copy_last():
    latents = moving_blob_latents()
    head = regression_head(input_noise=0.0)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-2)
    for _ in range(150):
        out = head(Latents(latents))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert set(out) == {"loss", "l1", "mse", "cosine"} and out["cosine"] > 0.9
    assert bool(head.objective.standardizer.fitted) and "objective.standardizer.mean" in head.state_dict()
    future = head.rollout(Latents(latents[:, :4]), 4)
    assert future.codes is None and future.latents.shape == (8, 4, 16, 3)
    err = (future.latents - latents[:, 4:]).abs().mean()
    copy_last = (latents[:, 3:4] - latents[:, 4:]).abs().mean()
    assert err < 0.25 * copy_last, (err, copy_last)


def test_regression_config_errors():
    with pytest.raises(ValueError, match="objective=regression needs head.params.ordering=frame"):
        tiny_head("token", spec=CONTINUOUS, objective="regression")
    with pytest.raises(ValueError, match="objective=regression"):  # the autoregressive default on a continuous spec
        tiny_head("frame", spec=CONTINUOUS)
    with pytest.raises(ValueError, match="head.params.loss"):
        regression_head(loss="huber")
    with pytest.raises(ValueError, match="head.params.objective"):
        regression_head(objective="diffusion")
    with pytest.raises(ValueError, match=r"\(B, T, N=16, D=3\)"):
        regression_head()(Latents(torch.randn(2, 4, 16, 5)))
    assert MambaHead.config_needs_codes({}) and not MambaHead.config_needs_codes({"objective": "regression"})
