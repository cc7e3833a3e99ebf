"""Tests of the ``transformer`` head (futurelat/models/heads/transformer.py, trunks/transformer.py); the
attention layers are tested in test_attention.py."""

from __future__ import annotations

import math

import pytest
import torch

from futurelat.models.base import LatentSpec, Latents
from futurelat.models.heads.attention import conv_over_clip, conv_over_grid
from futurelat.models.heads.objectives.latent_regression import LOSSES
from futurelat.models.heads.positions import POSITIONS
from futurelat.models.heads.transformer import TransformerHead
from futurelat.registry import HEADS

from head_checks import (assert_bar_rolled_out, assert_causal, assert_rejects_bad_codes, assert_steps_match_parallel,
                         make_head)

SPEC = LatentSpec(latent_dim=8, grid=(4, 4), codebook_size=16)
# (ordering, patch_size): the frame ordering with and without patches of codes, and the token ordering.
AR_VARIANTS = [("frame", 1), ("frame", 2), ("token", 1)]


def tiny_head(objective: str = "autoregressive", spec: LatentSpec = SPEC, num_frames: int = 6,
              **kwargs) -> TransformerHead:
    torch.manual_seed(0)
    config = dict(objective=objective, context_latents=3, d_model=24, num_layers=2, num_heads=2, mlp_ratio=2.0,
                  patch_size=1, position="rope", sampling=None)  # sampling None: greedy
    config.update(kwargs)
    return make_head("transformer", spec, num_frames, **config)


def random_output(head: TransformerHead) -> TransformerHead:
    """The output layer starts at zero (uniform logits); give it weights so logits depend on the input."""
    torch.nn.init.normal_(head.objective.to_out.weight, std=0.5)
    return head


def random_codes(batch: int = 2, frames: int = 6, spec: LatentSpec = SPEC, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, spec.codebook_size, (batch, frames, spec.tokens_per_frame), generator=g)


def as_codes(codes: torch.Tensor) -> Latents:
    return Latents(latents=torch.zeros(*codes.shape, 0), codes=codes)


def bouncing_bar(num_clips: int = 16, frames: int = 12, width: int = 8) -> torch.Tensor:
    """Codes ``(B, T, 2 * width)``: a vertical bar (code 1 on code 0, grid ``(2, width)``) moving 1 column
    per frame and bouncing off the walls. Clip ``i`` starts at column ``i % width``, moving right for
    ``i < width`` and left otherwise, so 16 clips cover every (column, direction) state."""
    clips = torch.zeros(num_clips, frames, 2, width, dtype=torch.int64)
    for i in range(num_clips):
        col, step = i % width, 1 if i < width else -1
        for t in range(frames):
            clips[i, t, :, col] = 1
            if not 0 <= col + step < width:
                step = -step
            col += step
    return clips.flatten(2)


def bar_latents(codes: torch.Tensor) -> torch.Tensor:
    """Latents ``(B, T, N, 4)`` of bar codes at an arbitrary scale and offset, like a VQ backbone's."""
    table = torch.tensor([[1.0, -2.0, 0.5, 3.0], [-1.0, 2.0, 3.0, -3.0]]) * 20 + 7
    return table[codes]


def train(head: TransformerHead, z: Latents, steps: int, lr: float = 3e-3, decay: bool = False) -> list[float]:
    """AdamW steps on one batch; the losses. ``decay``: the learning rate falls linearly to 0 (at a constant
    high rate a near-converged fit can bounce back, by how much depending on the machine's float rounding)."""
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 - step / steps if decay else 1.0)
    losses = []
    for _ in range(steps):
        out = head(z)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        schedule.step()
        losses.append(out["loss"].item())
    return losses


# --------------------------------------------------------------------------- regression


@pytest.mark.parametrize("codebook_size", [None, 16])
def test_regression_shapes_and_metrics(codebook_size):
    spec = LatentSpec(latent_dim=8, grid=(4, 4), codebook_size=codebook_size)
    head = tiny_head("regression", spec, patch_size=2, position="sincos")
    assert head.needs_codes is False and type(head).needs_codes is False
    z = Latents(torch.randn(2, 6, 16, 8))
    out = head(z)
    assert set(out) == {"loss", "l1", "mse", "cosine"} and all(v.ndim == 0 for v in out.values())
    assert -1 <= out["cosine"] <= 1 and out["l1"] >= 0
    future = head.rollout(z[:3], 2)
    assert future.latents.shape == (2, 2, 16, 8) and future.codes is None
    assert head.training  # rollout restores the mode it found


def test_residual_regression_starts_at_copy_last_and_learns_to_move():
    head = tiny_head("regression", SPEC, target="residual")
    z = Latents(torch.randn(2, 6, 16, 8))
    head.train()
    head(z)  # fits the standardizer
    future = head.rollout(z[:3], 3).latents
    torch.testing.assert_close(future, z.latents[:, 2:3].expand(-1, 3, -1, -1), atol=1e-5, rtol=0)
    absolute = tiny_head("regression", SPEC)
    absolute.train()
    absolute(z)
    assert not torch.allclose(absolute.rollout(z[:3], 3).latents, future, atol=1e-3)


def test_regression_standardizes_with_buffers_estimated_from_the_first_batch():
    head = tiny_head("regression")
    torch.manual_seed(1)
    scale, offset = torch.linspace(1, 50, 8), torch.linspace(-100, 100, 8)
    batches = [torch.randn(4, 6, 16, 8) * scale + offset for _ in range(2)]
    assert set(head.state_dict()) >= {"objective.standardizer.mean", "objective.standardizer.std",
                                   "objective.standardizer.fitted"}
    # untrained: zero output layer, identity statistics → predicts the (zero) mean
    assert head.rollout(Latents(batches[0][:, :3]), 1).latents.abs().max() == 0
    head.eval()
    head(Latents(batches[0]))  # no statistics in eval mode
    assert not bool(head.objective.standardizer.fitted)
    head.train()
    for batch in batches:
        head(Latents(batch))
    seen = batches[0].reshape(-1, 8)  # the second batch comes after the estimate froze
    torch.testing.assert_close(head.objective.standardizer.mean, seen.mean(0), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(head.objective.standardizer.std, seen.std(0, unbiased=False), rtol=1e-4, atol=1e-3)
    assert head.objective.standardize(seen).std(0, unbiased=False).sub(1).abs().max() < 1e-3
    torch.testing.assert_close(head.rollout(Latents(batches[0][:, :3]), 1).latents,
                               head.objective.standardizer.mean.expand(4, 1, 16, 8))  # zero output: the mean
    fresh = tiny_head("regression")
    fresh.load_state_dict(head.state_dict())  # the statistics travel with the checkpoint
    torch.testing.assert_close(fresh.objective.standardizer.mean, head.objective.standardizer.mean)


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_each_regression_loss(loss):
    head = tiny_head("regression", loss=loss, num_layers=1)
    torch.manual_seed(2)
    z = Latents(torch.randn(2, 6, 16, 8) * 3)
    losses = train(head, z, 8)
    x = head.objective.standardize(z.latents)
    expected = LOSSES[loss](head.objective.predict(head.trunk, x[:, :3]), x[:, 3:])
    torch.testing.assert_close(head(z)["loss"], expected)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("attention,spatial_kernel", [("full", 0), ("factorized", 0), ("full", 3)])
def test_regression_learns_a_moving_bar_and_rolls_out_past_its_horizon(attention, spatial_kernel):
    spec = LatentSpec(latent_dim=4, grid=(2, 8), codebook_size=2)
    codes = torch.zeros(8, 12, 2, 8, dtype=torch.int64)  # clip i: a bar at column (i + t) % 8 in frame t
    for i in range(8):
        codes[i, torch.arange(12), :, (i + torch.arange(12)) % 8] = 1
    codes = codes.flatten(2)
    latents = bar_latents(codes)  # (8, 12, 16, 4)
    head = tiny_head("regression", spec, num_frames=8, context_latents=4, patch_size=2, d_model=32, num_heads=4,
                     attention=attention, spatial_kernel=spatial_kernel)
    losses = train(head, Latents(latents[:, :8]), 150, lr=1e-2, decay=True)
    assert losses[-1] < 0.01 * losses[0]
    future = head.rollout(Latents(latents[:, :4]), 8).latents  # two blocks of the trained 4 frames
    assert future.shape == (8, 8, 16, 4)
    error = (future - latents[:, 4:]).abs().mean() / latents.std()
    nearest = torch.cdist(future.reshape(-1, 4), bar_latents(torch.arange(2))).argmin(-1).view(8, 8, 16)
    assert error < 0.05 and torch.equal(nearest, codes[:, 4:])


def test_regression_rollout_feeds_blocks_back():
    head = tiny_head("regression", num_frames=5, context_latents=3)  # trained future: 2 frames
    torch.nn.init.normal_(head.objective.to_out.weight, std=0.5)
    context = Latents(torch.randn(1, 4, 16, 8))
    out = head.rollout(context, 5).latents
    assert out.shape == (1, 5, 16, 8)
    with torch.no_grad():
        x = head.objective.standardize(context.latents)[:, -3:]
        first = head.objective.predict(head.trunk, x)
        second = head.objective.predict(head.trunk, torch.cat([x, first], 1)[:, -3:])
    torch.testing.assert_close(out[:, :4], head.objective.unstandardize(torch.cat([first, second], 1)))


# ------------------------------------------------------------------------ autoregressive


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("ordering,patch_size", AR_VARIANTS)
def test_kv_cache_steps_match_teacher_forced_logits(ordering, patch_size, position):
    head = random_output(tiny_head(ordering=ordering, patch_size=patch_size, position=position)).eval()
    parallel = assert_steps_match_parallel(head, random_codes(), ordering)
    assert parallel.abs().amax() > 0.1


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("ordering,patch_size", AR_VARIANTS)
def test_causality(ordering, patch_size, position):
    head = random_output(tiny_head(ordering=ordering, patch_size=patch_size, position=position)).eval()
    assert_causal(head, random_codes(), ordering)


@pytest.mark.parametrize("ordering,patch_size", AR_VARIANTS)
def test_rollout_greedy_determinism_and_seeded_sampling(ordering, patch_size):
    head = random_output(tiny_head(ordering=ordering, patch_size=patch_size, sampling={"greedy": True}))
    context = as_codes(random_codes(frames=3))
    out = head.rollout(context, 2)
    assert out.codes.shape == (2, 2, 16) and out.codes.dtype == torch.int64
    assert out.latents.shape == (2, 2, 16, 0) and out.latents.is_floating_point()
    assert 0 <= int(out.codes.min()) and int(out.codes.max()) < SPEC.codebook_size
    assert torch.equal(out.codes, head.rollout(context, 2).codes)
    assert head.training
    head.sampling = {"greedy": False, "temperature": 3.0}
    draw = lambda seed: head.rollout(context, 2, generator=torch.Generator().manual_seed(seed)).codes  # noqa: E731
    assert torch.equal(draw(0), draw(0)) and not torch.equal(draw(0), draw(1))
    head.sampling = {"greedy": False, "top_k": 1, "temperature": 1.7}
    assert torch.equal(out.codes, head.rollout(context, 2).codes)  # top-1 sampling is greedy


def test_frame_prior_learns_a_bouncing_bar_and_rolls_it_out():
    spec = LatentSpec(latent_dim=4, grid=(2, 8), codebook_size=4)
    codes = bouncing_bar()
    head = tiny_head(spec=spec, num_frames=12, patch_size=2, d_model=32, num_heads=4)
    losses = train(head, as_codes(codes), 100, lr=1e-2)
    assert losses[-1] < 0.05 * losses[0]
    future = head.rollout(as_codes(codes[:, :4]), 8).codes  # greedy, from 4 context frames
    assert_bar_rolled_out(future, codes[:, 4:])


def test_token_prior_overfits_a_small_batch():
    codes = random_codes(batch=2, frames=2)
    head = tiny_head(ordering="token", context_latents=1, num_frames=2)
    losses = train(head, as_codes(codes), 60, lr=1e-2)
    out = head(as_codes(codes))
    assert losses[-1] < 0.2 * losses[0] and out["accuracy"] > 0.9
    assert set(out) == {"loss", "accuracy", "bits_per_token"}
    torch.testing.assert_close(out["bits_per_token"], out["loss"].detach() / math.log(2))


@pytest.mark.parametrize("position", POSITIONS)
def test_a_25600_token_sequence_has_no_position_limit(position):
    spec = LatentSpec(latent_dim=4, grid=(16, 16), codebook_size=8)
    head = make_head("transformer", spec, 100, objective="autoregressive", ordering="token", context_latents=10,
                     d_model=16, num_layers=1, num_heads=2, position=position).eval()
    codes = torch.randint(0, 8, (1, 100, 256), generator=torch.Generator().manual_seed(0))  # 100 x 16 x 16
    with torch.no_grad():
        logits = head.logits(codes)
    assert logits.shape == (1, 100, 256, 8) and torch.isfinite(logits).all()


# ------------------------------------------------------- ALiBi: longer rollouts, attention backends


def test_alibi_token_prior_samples_more_latent_frames_than_it_was_built_for():
    """Built for clips of 4 latent frames, rolled out for 2 context + 6 future: nothing in the head is sized
    by the length, the KV-cached steps past frame 4 give the logits of a no-cache pass over all 8
    frames, and the greedy draws are that pass's argmax."""
    head = random_output(tiny_head(ordering="token", position="alibi", num_frames=4, context_latents=2,
                                   sampling={"greedy": True})).eval()
    longer = tiny_head(ordering="token", position="alibi", num_frames=40, context_latents=2)
    shapes = lambda h: {k: v.shape for k, v in h.state_dict().items()}  # noqa: E731
    assert shapes(head) == shapes(longer)
    codes = random_codes(frames=8)
    assert_steps_match_parallel(head, codes, "token")  # 8 x 16 steps against the cache = one pass without it
    future = head.rollout(as_codes(codes[:, :2]), 6).codes
    assert future.shape == (2, 6, 16) and future.dtype == torch.int64
    assert 0 <= int(future.min()) and int(future.max()) < SPEC.codebook_size
    with torch.no_grad():
        logits = head.logits(torch.cat([codes[:, :2], future], 1))  # (B, 8, N, K), no cache
    assert torch.equal(logits[:, 2:].argmax(-1), future)


def test_trained_alibi_prior_keeps_its_scene_past_the_trained_length():
    """Trained on 4-frame clips of a still, uniform scene (one code everywhere), it rolls out 6 frames after
    2 (twice its clip length) and the scene stays."""
    spec = LatentSpec(latent_dim=4, grid=(2, 4), codebook_size=4)
    codes = (torch.arange(8) % 4)[:, None, None].expand(8, 4, 8).clone()  # (B, T=4, N=8)
    head = tiny_head(spec=spec, num_frames=4, ordering="token", position="alibi", context_latents=2, d_model=16,
                     num_layers=1, sampling={"greedy": True})
    losses = train(head, as_codes(codes), 30, lr=3e-2)
    assert losses[-1] < 0.06  # the floor: ln(4) for the first code of 32, 0.043 nats per code
    future = head.rollout(as_codes(codes[:4, :2]), 6).codes  # greedy
    assert torch.equal(future, codes[:4, :1].expand(4, 6, 8))


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("ordering,position", [("token", "alibi"), ("frame", "rope")])
def test_flex_backend_gives_the_sdpa_logits_and_rollouts(ordering, position):
    """On CPU ``backend=flex`` runs torch's eager FlexAttention (forward only): the training pass and the
    prefill go through it, the decode steps through SDPA; logits and steps equal the SDPA head's."""
    greedy = {"greedy": True}
    sdpa = random_output(tiny_head(ordering=ordering, position=position, backend="sdpa", sampling=greedy)).eval()
    other = tiny_head(ordering=ordering, position=position, backend="flex", sampling=greedy).eval()
    other.load_state_dict(sdpa.state_dict())
    codes = random_codes()
    with torch.no_grad():
        torch.testing.assert_close(other.logits(codes), sdpa.logits(codes), atol=1e-5, rtol=1e-5)
    assert_steps_match_parallel(other, codes, ordering)
    context = as_codes(codes[:, :3])
    assert torch.equal(other.rollout(context, 2).codes, sdpa.rollout(context, 2).codes)


def test_backend_is_checked_and_auto_trains_on_cpu():
    with pytest.raises(ValueError, match=r"head\.params\.backend must be one of auto, sdpa, flex"):
        tiny_head(backend="cuda")
    with pytest.raises(ValueError, match=r"head\.params\.backend=flex has no attention dropout"):
        tiny_head(backend="flex", dropout=0.1)
    head = tiny_head(ordering="token", position="alibi")  # the config's default: auto
    assert all(block.attn.backend == "auto" for block in head.blocks)
    head(as_codes(random_codes()))["loss"].backward()  # SDPA on CPU: trains


def test_model_and_evaluator_roll_out_more_frames_than_the_clips_trained_on():
    """A tiny VQ-VAE + ALiBi token prior built from the real configs for clips of 2 + 2 frames: the model's
    rollout and the frame evaluator run 6 future frames (8 in all, twice the clip)."""
    from composing import tiny_config
    from futurelat.evaluation.evaluator import evaluate_frames
    from futurelat.models.latent_video_model import build_model

    cfg = tiny_config(["head=transformer", "head.params.objective=autoregressive", "head.params.ordering=token",
                       "head.params.position=alibi", "dataset.image_size=32", "dataset.context_frames=2",
                       "dataset.future_frames=2"])
    torch.manual_seed(0)
    model = build_model(cfg)
    assert model.head.num_frames == 4 and model.head.trunk.position == "alibi"
    channels, size = cfg.dataset.channels, 32
    clips = torch.rand(3, 8, channels, size, size)
    model.backbone.train()
    model.backbone(clips[:, :2])  # the VQ codebook is initialised by its first batch
    model.backbone.freeze()
    loss = model.head(**model.head_inputs({"frames": clips[:2, :4]}))["loss"]  # a 4-frame training clip
    assert torch.isfinite(loss)
    future = model.rollout(clips[:2, :2], 6)
    assert future.shape == (2, 6, channels, size, size)
    assert torch.isfinite(future).all() and 0 <= future.min() and future.max() <= 1
    metrics = evaluate_frames(model, [{"frames": clip} for clip in clips], context_frames=2, future_frames=6,
                              batch_size=2, progress=False, num_visualize=0)
    assert metrics["test/num_sequences"] == 3 and math.isfinite(metrics["test/mse/step_06"])


# ------------------------------------------------------------------------- config errors


def test_registry_needs_codes_and_objective_errors():
    assert HEADS.get("transformer") is TransformerHead
    assert tiny_head().needs_codes is True
    with pytest.raises(ValueError, match="no codes.*objective: regression"):
        tiny_head(spec=LatentSpec(latent_dim=8, grid=(4, 4)))
    continuous = tiny_head("regression", LatentSpec(latent_dim=8, grid=(4, 4)))
    with pytest.raises(ValueError, match="autoregressive"):
        continuous.prefill(random_codes())
    head = tiny_head()
    assert_rejects_bad_codes(head, random_codes())
    with pytest.raises(ValueError, match=r"T == 6"):
        continuous(Latents(torch.zeros(2, 5, 16, 8)))
    with pytest.raises(ValueError, match="num_future"):
        head.rollout(as_codes(random_codes()), 0)


@pytest.mark.parametrize("key,value", [
    ("objective", "diffusion"), ("ordering", "pixel"), ("position", "learned"), ("loss", "huber"),
    ("context_latents", 0), ("context_latents", 6), ("num_heads", 5), ("d_model", 0), ("num_layers", 0),
    ("mlp_ratio", 0), ("dropout", 1.0), ("patch_size", 3), ("query_chunk", 0), ("target", "delta"),
    ("attention", "axial"), ("spatial_kernel", 2), ("spatial_kernel", -1), ("temporal_kernel", 2),
    ("temporal_kernel", 0), ("temporal_kernel", 3),  # 3 with spatial_kernel 0: nothing to extend
])
def test_bad_config_keys_are_named(key, value):
    with pytest.raises(ValueError, match=rf"head\.params\.{key}"):
        tiny_head(**{key: value})


def test_factorized_attention_is_for_the_regression_only():
    with pytest.raises(ValueError, match=r"head\.params\.attention=factorized.*autoregressive"):
        tiny_head("autoregressive", attention="factorized")
    with pytest.raises(ValueError, match=r"head\.params\.attention=factorized.*alibi"):
        tiny_head("regression", attention="factorized", position="alibi")


def test_spatial_kernel_is_for_the_regression_only():
    with pytest.raises(ValueError, match=r"head\.params\.spatial_kernel.*autoregressive"):
        tiny_head("autoregressive", spatial_kernel=3)


def mixer_reach(head: TransformerHead, mix, frames: int) -> torch.Tensor:
    """Which tokens of ``frames`` frames of 5 x 5 tokens change when the centre cell of frame 1 moves.

    Checks that the head's first mixer starts at zero, gives it random weights, and applies it with
    ``mix`` (``conv_over_grid`` or ``conv_over_clip``): ``(frames, 5, 5)`` bool.
    """
    conv = head.trunk.spatial_mixers[0]
    assert conv.weight.abs().sum() == 0  # zero at init: the head starts as the plain transformer
    torch.nn.init.normal_(conv.weight)
    x = torch.randn(1, frames, 25, 24)
    moved = x.clone()
    moved[0, 1, 12] += 1.0  # frame 1, centre cell (2, 2)
    return ((mix(conv, moved, head.trunk.grid) - mix(conv, x, head.trunk.grid)).abs().sum(-1)[0] > 1e-6).view(
        frames, 5, 5)


def test_spatial_mixer_reaches_the_kernel_neighbourhood_within_a_frame():
    head = tiny_head("regression", spec=LatentSpec(latent_dim=8, grid=(5, 5)), spatial_kernel=3)
    assert len(head.trunk.spatial_mixers) == 2 and head.trunk.spatial_mixers[0].groups == head.trunk.spatial_mixers[0].in_channels
    expected = torch.zeros(2, 5, 5, dtype=torch.bool)
    expected[1, 1:4, 1:4] = True  # the 3 x 3 neighbourhood in the same frame, nothing else
    assert torch.equal(mixer_reach(head, conv_over_grid, frames=2), expected)


def test_temporal_kernel_reaches_the_neighbourhood_in_adjacent_frames():
    head = tiny_head("regression", spec=LatentSpec(latent_dim=8, grid=(5, 5)), spatial_kernel=3, temporal_kernel=3)
    conv = head.trunk.spatial_mixers[0]
    assert isinstance(conv, torch.nn.Conv3d) and conv.kernel_size == (3, 3, 3) and conv.groups == conv.in_channels
    expected = torch.zeros(4, 5, 5, dtype=torch.bool)
    expected[0:3, 1:4, 1:4] = True  # the 3 x 3 neighbourhood in frames 0, 1 and 2; nothing in frame 3
    assert torch.equal(mixer_reach(head, conv_over_clip, frames=4), expected)
    z = Latents(torch.randn(2, 6, 25, 8))
    random_output(head)(z)["loss"].backward()  # the trunk runs the 3-D mixers
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_2plus1d_factorization_reaches_the_same_neighbourhood_over_two_steps():
    head = tiny_head("regression", spec=LatentSpec(latent_dim=8, grid=(5, 5)), spatial_kernel=3, temporal_kernel=3,
                     conv_factorization="2+1d")
    assert all(isinstance(c, torch.nn.Conv2d) for c in head.trunk.spatial_mixers) and len(head.trunk.temporal_mixers) == 2
    spatial = mixer_reach(head, conv_over_grid, frames=4)  # the first step: the 3 x 3 cells of frame 1
    temporal = head.trunk.temporal_mixers[0]
    assert temporal.weight.abs().sum() == 0
    torch.nn.init.normal_(temporal.weight)
    reach = (temporal(spatial.view(1, 4, 25, 1).float().expand(-1, -1, -1, 24)).abs().sum(-1) > 1e-6).view(4, 5, 5)
    expected = torch.zeros(4, 5, 5, dtype=torch.bool)
    expected[0:3, 1:4, 1:4] = True  # as the joint 3 x 3 x 3 conv: frames 0, 1 and 2; nothing in frame 3
    assert torch.equal(reach, expected)
    z = Latents(torch.randn(2, 6, 25, 8))
    random_output(head)(z)["loss"].backward()  # the trunk runs both halves
    assert temporal.weight.grad is not None and temporal.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"head\.params\.conv_factorization"):
        tiny_head(conv_factorization="3d")


def test_position_widths_and_sampling_keys_are_checked():
    with pytest.raises(ValueError, match=r"head\.params\.d_model.*rope"):
        tiny_head(d_model=8, num_heads=2, position="rope")  # head width 4 < 6
    with pytest.raises(ValueError, match=r"head\.params\.d_model.*sincos"):
        tiny_head(d_model=9, num_heads=1, position="sincos")
    tiny_head(d_model=8, num_heads=2, position="alibi")  # ALiBi has no width constraint
    with pytest.raises(ValueError, match="sampling"):
        tiny_head(sampling={"greedy": True, "beam": 4})
