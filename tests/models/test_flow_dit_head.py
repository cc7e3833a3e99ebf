"""Tests of rectified flow (futurelat/models/heads/flow.py) and the ``flow_dit`` head (flow_dit.py,
trunks/dit.py, objectives/flow_matching.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from futurelat.models.base import LatentSpec, Latents
from futurelat.models.heads.flow import guided_velocity, integrate, linear_path, sample_times, sampling_options
from futurelat.models.heads.flow_dit import FlowDiTHead
from futurelat.registry import HEADS

from head_checks import make_head

CONDITIONINGS = ["in_context", "cross_attention"]
SPEC = LatentSpec(latent_dim=4, grid=(4, 4))
CONTEXT, FUTURE = 3, 2  # latent frames of a training clip


def tiny_head(conditioning: str = "in_context", **kwargs) -> FlowDiTHead:
    torch.manual_seed(0)
    config = dict(context_latents=CONTEXT, d_model=32, num_layers=2, num_heads=2, patch_size=2,
                  conditioning=conditioning, sampling={"solver": "euler", "steps": 4})
    config.update(kwargs)
    return make_head("flow_dit", SPEC, CONTEXT + FUTURE, **config)


def random_latents(batch: int = 2, frames: int = CONTEXT + FUTURE, seed: int = 1, scale: float = 1.0,
                   shift: float = 0.0) -> Latents:
    g = torch.Generator().manual_seed(seed)
    return Latents(torch.randn(batch, frames, SPEC.tokens_per_frame, SPEC.latent_dim, generator=g) * scale + shift)


def randomize(module: nn.Module) -> None:
    """Overwrite every parameter with N(0, 0.2): leaves the zero-initialised start (velocity 0)."""
    torch.manual_seed(3)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.2)


def moving_blob(num_clips: int = 2, frames: int = CONTEXT + FUTURE) -> torch.Tensor:
    """Latents ``(B, T, 16, 4)`` of one blob vector on a constant background of the 4x4 grid.

    Clip ``i`` holds the blob in row ``i``, starting in column ``i``, moving one column per frame
    (right for even ``i``, left for odd ``i``, wrapping around).
    """
    blob, background = torch.tensor([2.0, -1.0, 1.0, 0.5]), torch.tensor([0.5, 0.2, -0.3, 0.0])
    x = background.expand(num_clips, frames, 4, 4, 4).clone()
    for i in range(num_clips):
        step = 1 if i % 2 == 0 else -1
        for t in range(frames):
            x[i, t, i % 4, (i + step * t) % 4] = blob
    return x.flatten(2, 3)


# ------------------------------------------------------------------------ path and samplers


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_samplers_integrate_a_constant_field_exactly(steps):
    x0, c = torch.randn(5, 3), torch.randn(3)
    for solver in ("euler", "heun"):
        out = integrate(lambda x, t: c.expand_as(x), x0, solver=solver, steps=steps)
        torch.testing.assert_close(out, x0 + c)


def test_heun_integrates_a_field_affine_in_time_exactly():
    a, b, x0 = torch.randn(4), torch.randn(4), torch.randn(6, 4)
    calls = []

    def field(x, t):  # v = a + b t: x(1) = x(0) + a + b / 2
        calls.append(t)
        assert t.shape == (6,) and 0 <= float(t.min()) and float(t.max()) <= 1
        return a + b * t[:, None]

    exact = x0 + a + b / 2
    for steps in (1, 4):
        calls.clear()
        torch.testing.assert_close(integrate(field, x0, solver="heun", steps=steps), exact)
        assert len(calls) == 2 * steps and float(calls[-1][0]) == 1.0  # a full Heun step ends at t = 1
    one_euler = integrate(field, x0, solver="euler", steps=1)
    torch.testing.assert_close(one_euler, x0 + a)  # the velocity at t = 0 only: wrong by b / 2
    assert (one_euler - exact).abs().max() > 1e-2
    error = [(integrate(field, x0, solver="euler", steps=n) - exact).abs().max() for n in (4, 8)]
    assert error[1] < 0.6 * error[0]  # first order


def test_guidance_combines_conditional_and_unconditional_in_one_batched_call():
    v_cond, v_uncond, x, t = torch.randn(3, 2), torch.randn(3, 2), torch.randn(3, 2), torch.rand(3)
    batches = []

    def field(x, t, uncond):
        batches.append(uncond.clone())
        return torch.where(uncond[:, None], v_uncond.repeat(len(x) // 3, 1), v_cond.repeat(len(x) // 3, 1))

    torch.testing.assert_close(guided_velocity(field, 1.0)(x, t), v_cond)
    assert len(batches) == 1 and batches[0].tolist() == [False] * 3
    batches.clear()
    torch.testing.assert_close(guided_velocity(field, 2.5)(x, t), v_uncond + 2.5 * (v_cond - v_uncond))
    assert len(batches) == 1 and batches[0].tolist() == [False] * 3 + [True] * 3
    torch.testing.assert_close(guided_velocity(field, 0.0)(x, t), v_uncond)


def test_linear_path_and_time_sampling():
    x0, x1 = torch.randn(4, 2, 3), torch.randn(4, 2, 3)
    path = linear_path(x0, x1, torch.tensor([0.0, 1.0, 0.25, 0.5]))
    torch.testing.assert_close(path.x_t[0], x0[0])
    torch.testing.assert_close(path.x_t[1], x1[1])
    torch.testing.assert_close(path.x_t[2], 0.75 * x0[2] + 0.25 * x1[2])
    torch.testing.assert_close(path.velocity, x1 - x0)
    g = torch.Generator().manual_seed(0)
    uniform = sample_times(20_000, "uniform", generator=g)
    logit_normal = sample_times(20_000, "logit_normal", generator=g)
    for t in (uniform, logit_normal):
        assert t.shape == (20_000,) and 0 <= float(t.min()) and float(t.max()) <= 1
        assert abs(float(t.mean()) - 0.5) < 0.01
    middle = lambda t: float(((t - 0.5).abs() < 0.25).float().mean())  # noqa: E731
    assert abs(middle(uniform) - 0.5) < 0.02 and middle(logit_normal) > 0.65  # SD3: more mass mid-path
    with pytest.raises(ValueError, match="time_sampling"):
        sample_times(3, "cosine")


def test_sampling_options_and_integrate_validation():
    assert sampling_options(None).solver == "heun"
    assert sampling_options({"solver": "euler", "steps": 3, "guidance_scale": 2}).guidance_scale == 2.0
    for bad, key in [({"solver": "rk4"}, "solver"), ({"steps": 0}, "steps"), ({"steps": 2.5}, "steps"),
                     ({"guidance_scale": -1.0}, "guidance_scale"), ({"cfg": 2.0}, "cfg"),
                     ({"noise_scale": -0.5}, "noise_scale")]:
        with pytest.raises(ValueError, match=key):
            sampling_options(bad)
    with pytest.raises(ValueError, match="solver"):
        integrate(lambda x, t: x, torch.zeros(1, 1), solver="dopri5")
    with pytest.raises(ValueError, match="steps"):
        integrate(lambda x, t: x, torch.zeros(1, 1), steps=0)


def test_trained_toy_flow_maps_noise_to_a_shifted_gaussian():
    """Flow matching N(0, I) → N(mu, s^2 I) in 2-D with a tiny MLP velocity ``v(x, t)``."""
    torch.manual_seed(0)
    mu, s = torch.tensor([2.0, -1.0]), 0.5
    net = nn.Sequential(nn.Linear(3, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 2))
    velocity = lambda x, t: net(torch.cat([x, t[:, None]], dim=1))  # noqa: E731
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(400):
        x1 = mu + s * torch.randn(256, 2)
        path = linear_path(torch.randn(256, 2), x1, sample_times(256))
        loss = (velocity(path.x_t, path.t) - path.velocity).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        samples = integrate(velocity, torch.randn(4000, 2, generator=torch.Generator().manual_seed(1)),
                            solver="heun", steps=20)
    torch.testing.assert_close(samples.mean(0), mu, atol=0.1, rtol=0)
    torch.testing.assert_close(samples.std(0), torch.full((2,), s), atol=0.1, rtol=0)


# ------------------------------------------------------------------------------- the head


@pytest.mark.parametrize("position", ["sincos", "rope"])
@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_shapes_and_outputs(conditioning, position):
    head = tiny_head(conditioning, position=position)
    assert HEADS.get("flow_dit") is FlowDiTHead and not FlowDiTHead.needs_codes
    out = head(random_latents())
    assert set(out) == {"loss", "x1_mse"} and out["loss"].ndim == 0 and out["loss"].requires_grad
    out["loss"].backward()
    assert head.trunk.null_context.grad is not None  # in the graph even without dropped contexts (DDP)
    future = head.rollout(random_latents(frames=CONTEXT + 2), 2)  # a longer context: its last 3 frames
    assert future.latents.shape == (2, 2, SPEC.tokens_per_frame, SPEC.latent_dim) and future.codes is None
    assert head.training  # rollout restores the mode it found
    x, t, uncond = torch.randn(2, 7, 16, 4), torch.rand(2), torch.zeros(2, dtype=torch.bool)
    assert head.velocity(x, t, torch.randn(2, 5, 16, 4), uncond).shape == x.shape  # no cap on lengths


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_adaln_zero_blocks_start_as_identity(conditioning):
    head = tiny_head(conditioning)
    c, x = torch.randn(2, 32), torch.randn(2, 12, 32)
    context = torch.randn(2, 8, 32) if conditioning == "cross_attention" else None
    for block in head.blocks:
        gates = block.ada(c).chunk(9 if context is not None else 6, dim=-1)[2::3]
        assert all(torch.equal(g, torch.zeros_like(g)) for g in gates)
        torch.testing.assert_close(block(x, c, context), x, atol=0, rtol=0)
    z = random_latents()
    v = head.velocity(z.latents[:, CONTEXT:], torch.rand(2), z.latents[:, :CONTEXT], torch.zeros(2, dtype=torch.bool))
    assert torch.equal(v, torch.zeros_like(v))  # zero-initialised final layer


def test_standardization_buffers_are_set_once_and_saved():
    head = tiny_head()
    data = random_latents(batch=8, scale=5.0, shift=3.0)
    head.eval()
    head(data)
    assert not bool(head.objective.standardizer.fitted)  # only a training batch sets them
    head.train()
    head(data)
    assert bool(head.objective.standardizer.fitted)
    torch.testing.assert_close(head.objective.standardizer.mean, torch.full((4,), 3.0), atol=0.5, rtol=0)
    torch.testing.assert_close(head.objective.standardizer.std, torch.full((4,), 5.0), atol=0.5, rtol=0)
    mean = head.objective.standardizer.mean.clone()
    head(random_latents(shift=-10.0))
    assert torch.equal(head.objective.standardizer.mean, mean)  # only the first batch counts
    # velocity 0 at init: samples are un-standardized noise, on the data's scale
    sample = head.rollout(random_latents(batch=8, frames=CONTEXT), 2).latents
    assert abs(float(sample.mean()) - 3.0) < 0.5 and abs(float(sample.std()) - 5.0) < 0.5

    state = head.state_dict()
    assert {"objective.standardizer.mean", "objective.standardizer.std", "objective.standardizer.fitted"} <= set(state)
    fresh = tiny_head()
    assert not bool(fresh.objective.standardizer.fitted)
    randomize(head)
    fresh.load_state_dict(head.state_dict())
    assert bool(fresh.objective.standardizer.fitted)
    assert torch.equal(fresh.objective.standardizer.std, head.objective.standardizer.std)
    context = random_latents(frames=CONTEXT)
    draw = lambda model: model.rollout(context, 2, generator=torch.Generator().manual_seed(0)).latents  # noqa: E731
    torch.testing.assert_close(draw(fresh), draw(head))


def test_rollout_is_reproducible_with_a_generator():
    head = tiny_head()
    randomize(head)
    context = random_latents(frames=CONTEXT)
    draw = lambda seed: head.rollout(context, 2, generator=torch.Generator().manual_seed(seed)).latents  # noqa: E731
    assert torch.equal(draw(0), draw(0))
    assert not torch.allclose(draw(0), draw(1))


def test_context_dropout_replaces_the_context_by_the_null_token():
    head = tiny_head(context_dropout=0.5)
    randomize(head)
    x, t = torch.randn(2, FUTURE, 16, 4), torch.rand(2)
    a, b = random_latents(frames=CONTEXT, seed=1).latents, random_latents(frames=CONTEXT, seed=2).latents
    uncond = torch.tensor([True, False])
    va, vb = head.velocity(x, t, a, uncond), head.velocity(x, t, b, uncond)
    torch.testing.assert_close(va[0], vb[0])  # dropped: the context is not seen
    assert (va[1] - vb[1]).abs().max() > 1e-3
    z = random_latents()
    head.eval()
    torch.manual_seed(0)
    loss = head(z)["loss"]
    torch.manual_seed(0)
    assert torch.equal(loss, head(z)["loss"])


@pytest.mark.parametrize("conditioning,position,prediction", [
    ("in_context", "sincos", "velocity"), ("cross_attention", "sincos", "velocity"), ("in_context", "rope", "velocity"),
    ("cross_attention", "rope", "velocity"), ("in_context", "sincos", "data")])
def test_overfits_moving_latents_better_than_copying_the_last_frame(conditioning, position, prediction):
    clips = moving_blob()
    head = tiny_head(conditioning, context_dropout=0.0, position=position, prediction=prediction)
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=0.0)
    z, losses = Latents(clips.repeat(8, 1, 1, 1)), []
    for _ in range(250):
        loss = head(z)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-20:]) / 20 < 0.2 * sum(losses[:20]) / 20
    truth = clips[:, CONTEXT:]
    copy_last = (clips[:, CONTEXT - 1:CONTEXT] - truth).square().mean()
    for solver in ("euler", "heun"):
        head.sampling = {"solver": solver, "steps": 10}
        pred = head.rollout(Latents(clips[:, :CONTEXT]), FUTURE, generator=torch.Generator().manual_seed(0)).latents
        assert (pred - truth).square().mean() < 0.05 * copy_last, solver


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_rope_positions_make_the_velocity_depend_on_where_tokens_are(conditioning):
    """No position is added to the tokens with rope: only the rotations tell the tokens apart."""
    head = tiny_head(conditioning, position="rope")
    randomize(head)
    z = random_latents(batch=1)
    context, future = z.latents[:, :CONTEXT], z.latents[:, CONTEXT:]
    t, uncond = torch.full((1,), 0.5), torch.zeros(1, dtype=torch.bool)
    swap = [1, 0, *range(2, SPEC.tokens_per_frame)]  # exchange the first two tokens of every future frame
    v = head.velocity(future, t, context, uncond)
    v_swapped = head.velocity(future[:, :, swap], t, context, uncond)
    assert not torch.allclose(v_swapped, v[:, :, swap], atol=1e-4)


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_trained_checkpoints_keep_their_layout(conditioning):
    """The names and shapes a trained DiT's state_dict holds per block (a checkpoint loads strictly)."""
    head = tiny_head(conditioning)
    block = {k[len("trunk.blocks.0."):]: tuple(v.shape) for k, v in head.state_dict().items()
             if k.startswith("trunk.blocks.0.")}
    expected = {"attn.qkv.weight": (96, 32), "attn.qkv.bias": (96,), "attn.out_proj.weight": (32, 32),
                "attn.out_proj.bias": (32,), "mlp.fc1.weight": (128, 32), "mlp.fc1.bias": (128,),
                "mlp.fc2.weight": (32, 128), "mlp.fc2.bias": (32,)}
    if conditioning == "cross_attention":
        expected.update({"cross_attn.q.weight": (32, 32), "cross_attn.q.bias": (32,), "cross_attn.kv.weight": (64, 32),
                         "cross_attn.kv.bias": (64,), "cross_attn.out_proj.weight": (32, 32),
                         "cross_attn.out_proj.bias": (32,), "ada.1.weight": (288, 32), "ada.1.bias": (288,)})
    else:
        expected.update({"ada.1.weight": (192, 32), "ada.1.bias": (192,)})
    assert block == expected


def test_time_and_position_codes_are_dits_bit_for_bit():
    """DiT's sin-cos (``exp(-k ln(10^4) / n)`` ladder, each axis' [sin, cos] in turn; an odd width pads the
    frame part), recomputed here as DiT writes it: trained checkpoints keep their exact inputs."""
    def dit_sincos(pos, dim):
        half = dim // 2
        freqs = torch.exp(torch.arange(half, dtype=torch.float32) * (-math.log(10_000.0) / half))
        angles = pos.float()[..., None] * freqs
        return torch.nn.functional.pad(torch.cat([angles.sin(), angles.cos()], dim=-1), (0, dim % 2))

    head, seen = tiny_head(), []
    head.trunk.time_embed.mlp[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    t = torch.rand(5)
    head.trunk.time_embed(t)
    assert torch.equal(seen[0], dit_sincos(1000 * t, 256))
    for width in (32, 27):
        head = tiny_head(d_model=width, num_heads=1)
        frames, (h, w) = range(2, 5), head.trunk.patch_grid
        axes = torch.cartesian_prod(torch.arange(2, 5), torch.arange(h), torch.arange(w))
        space = 2 * (width // 6)
        expected = torch.cat([dit_sincos(axes[:, 0], width - 2 * space), dit_sincos(axes[:, 1], space),
                              dit_sincos(axes[:, 2], space)], -1)
        assert torch.equal(head.trunk._positions(frames.start, len(frames), torch.device("cpu")), expected)


def test_dit_attention_leaves_the_kernel_choice_to_torch():
    """Short CPU attention in the transformer trunk takes SDPA's math backend; the DiT's does not (its
    checkpoints were trained on torch's own choice, whose results differ in the last bits)."""
    head = tiny_head().eval()
    z = random_latents(batch=1)
    with torch.no_grad(), torch.profiler.profile() as prof:
        head.velocity(z.latents[:, CONTEXT:], torch.full((1,), 0.5), z.latents[:, :CONTEXT],
                      torch.zeros(1, dtype=torch.bool))
    names = {e.name for e in prof.events()}
    assert "aten::scaled_dot_product_attention" in names
    assert "aten::_scaled_dot_product_attention_math" not in names


@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_data_prediction_starts_at_the_last_frame_and_heun_never_calls_t_one(solver):
    head = tiny_head(target="residual", prediction="data", sampling={"solver": solver, "steps": 3})
    head(random_latents())  # fits the standardizers
    head.objective.residual_standardizer.mean.zero_()  # so a zero data estimate means "no change"
    z = random_latents(seed=5)
    pred = head.rollout(Latents(z.latents[:, :CONTEXT]), FUTURE, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(pred.latents, z.latents[:, CONTEXT - 1:CONTEXT].expand_as(pred.latents))
    calls = []
    x = integrate(lambda x, t: calls.append(t[0].item()) or torch.ones_like(x), torch.zeros(2, 3),
                  solver="heun", steps=4, euler_last=True)
    torch.testing.assert_close(x, torch.ones(2, 3))  # a constant field is still integrated exactly
    assert max(calls) == 0.75 and len(calls) == 7


def test_residual_target_overfits_moving_latents_and_starts_at_the_last_frame():
    clips = moving_blob()
    head = tiny_head(context_dropout=0.0, target="residual")
    context, truth = clips[:, :CONTEXT], clips[:, CONTEXT:]
    head.train()
    head(Latents(clips))  # fits both standardizers on this batch
    # Untrained (zero velocity), noise_scale 0 integrates to x_1 = 0: the residual's mean change.
    head.sampling = {"solver": "euler", "steps": 2, "noise_scale": 0.0}
    start = head.rollout(Latents(context), FUTURE).latents
    expected = head.objective.standardizer.inverse(head.objective.standardizer(context[:, -1:])
                                         + head.objective.residual_standardizer.inverse(torch.zeros_like(truth)))
    torch.testing.assert_close(start, expected.expand_as(start), atol=1e-5, rtol=0)
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=0.0)
    for _ in range(250):
        loss = head(Latents(clips.repeat(8, 1, 1, 1)))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    copy_last = (clips[:, CONTEXT - 1:CONTEXT] - truth).square().mean()
    head.sampling = {"solver": "heun", "steps": 10}
    pred = head.rollout(Latents(context), FUTURE, generator=torch.Generator().manual_seed(0)).latents
    assert (pred - truth).square().mean() < 0.05 * copy_last
    assert "objective.residual_standardizer.std" in head.state_dict()
    assert "objective.residual_standardizer.std" not in tiny_head().state_dict()


def test_noise_scale_zero_samples_deterministically_and_scales_the_start():
    head = tiny_head(sampling={"solver": "euler", "steps": 1, "noise_scale": 0.0})
    context = random_latents(frames=CONTEXT)
    a = head.rollout(context, FUTURE, generator=torch.Generator().manual_seed(0)).latents
    b = head.rollout(context, FUTURE, generator=torch.Generator().manual_seed(1)).latents
    assert torch.equal(a, b)
    # A fresh head predicts velocity 0, so a sample is its (scaled) starting noise, un-standardized.
    head.sampling = {"solver": "euler", "steps": 1, "noise_scale": 0.5}
    half = head.rollout(context, FUTURE, generator=torch.Generator().manual_seed(0)).latents
    head.sampling["noise_scale"] = 1.0
    full = head.rollout(context, FUTURE, generator=torch.Generator().manual_seed(0)).latents
    torch.testing.assert_close(half, 0.5 * full)


def test_guidance_scale_batches_conditional_and_unconditional_passes():
    head = tiny_head(context_dropout=0.1, sampling={"solver": "heun", "steps": 3, "guidance_scale": 1.0})
    randomize(head)
    batches = []
    head.trunk.final.register_forward_hook(lambda module, args, out: batches.append(args[0].shape[0]))
    context = random_latents(frames=CONTEXT)
    draw = lambda: head.rollout(context, FUTURE, generator=torch.Generator().manual_seed(0)).latents  # noqa: E731
    plain = draw()
    assert batches == [2] * 6  # heun: 2 evaluations per step, one pass each
    batches.clear()
    head.sampling["guidance_scale"] = 3.0
    guided = draw()
    assert batches == [4] * 6  # conditional and unconditional batched together
    assert guided.shape == plain.shape and torch.isfinite(guided).all()
    assert not torch.allclose(guided, plain)


def test_rollout_beyond_the_trained_horizon_feeds_samples_back():
    head = tiny_head()
    randomize(head)
    context = random_latents(frames=CONTEXT)
    long = head.rollout(context, 2 * FUTURE + 1, generator=torch.Generator().manual_seed(0)).latents
    assert long.shape == (2, 2 * FUTURE + 1, 16, 4)
    g = torch.Generator().manual_seed(0)  # the same noise, one block at a time
    first = head.rollout(context, FUTURE, generator=g).latents
    window = torch.cat([context.latents, first], dim=1)[:, -CONTEXT:]
    second = head.rollout(Latents(window), FUTURE, generator=g).latents
    torch.testing.assert_close(long[:, :FUTURE], first)
    torch.testing.assert_close(long[:, FUTURE:2 * FUTURE], second, atol=1e-4, rtol=1e-4)


def test_config_and_shape_errors():
    for kwargs, key in [(dict(sampling={"solver": "rk4"}), "solver"), (dict(sampling={"steps": 0}), "steps"),
                        (dict(patch_size=3), "patch_size"), (dict(patch_size=0), "patch_size"),
                        (dict(context_latents=0), "context_latents"), (dict(context_latents=5), "context_latents"),
                        (dict(conditioning="film"), "conditioning"), (dict(time_sampling="cosine"), "time_sampling"),
                        (dict(num_heads=3), "num_heads"), (dict(d_model=4, num_heads=1), "d_model"),
                        (dict(context_dropout=1.0), "context_dropout"),
                        (dict(context_dropout=0.0, sampling={"guidance_scale": 2.0}), "context_dropout"),
                        (dict(target="delta"), "target"), (dict(position="alibi"), "position"),
                        (dict(prediction="epsilon"), "prediction"),
                        (dict(position="rope", d_model=32, num_heads=8), "position"),
                        (dict(dropout=-0.1), "dropout"), (dict(num_layers=0), "num_layers"),
                        (dict(mlp_ratio=0.0), "mlp_ratio")]:
        with pytest.raises(ValueError, match=f"head\\.(params|sampling)\\.{key}"):
            tiny_head(**kwargs)
    head = tiny_head()
    with pytest.raises(ValueError, match=r"\(B, T, N=16, D=4\) with T == 5"):
        head(random_latents(frames=4))
    with pytest.raises(ValueError, match=r"shape=\(2, 5, 16, 3\)"):
        head(Latents(torch.zeros(2, 5, 16, 3)))
    with pytest.raises(ValueError, match="dtype=torch.int64"):
        head(Latents(torch.zeros(2, 5, 16, 4, dtype=torch.int64)))
    with pytest.raises(ValueError, match="T >= 3"):
        head.rollout(random_latents(frames=2), 1)
    with pytest.raises(ValueError, match="num_future"):
        head.rollout(random_latents(frames=3), 0)
    head.sampling = {"solver": "midpoint"}
    with pytest.raises(ValueError, match="head.sampling.solver"):
        head.rollout(random_latents(frames=3), 1)
