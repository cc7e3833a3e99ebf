"""Parallel scheduled sampling of the frame-ordered code priors, and which heads say their rollouts are
deterministic (futurelat/models/heads/objectives/code_prior.py, ComposedHead.deterministic)."""

from __future__ import annotations

import pytest
import torch

from futurelat.models.base import Latents

from head_checks import PRIOR_SPEC, TINY_PRIORS, perturbed_prior

SPEC, HEADS = PRIOR_SPEC, TINY_PRIORS


def prior_head(name: str, **kw):
    return perturbed_prior(name, patch_size=1, **kw)


def codes(batch: int = 3, frames: int = 6) -> torch.Tensor:
    return torch.randint(1, SPEC.codebook_size, (batch, frames, SPEC.tokens_per_frame),
                         generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", list(HEADS))
def test_own_draws_replace_the_input_frames_after_the_first(name):
    head = prior_head(name, scheduled_sampling=1.0)
    prior, x = head.objective, codes()
    with torch.no_grad():  # a prior sure of code 0 everywhere: its draws are all 0
        prior.logit_bias.fill_(-1e4) if hasattr(prior, "logit_bias") else prior.to_out.bias.fill_(-1e4)
        (prior.logit_bias if hasattr(prior, "logit_bias") else prior.to_out.bias)[::SPEC.codebook_size] = 1e4
    mixed = prior._own_draws(head.trunk, x)
    assert torch.equal(mixed[:, 0], x[:, 0]) and (mixed[:, 1:] == 0).all()
    prior.scheduled_sampling = 0.5
    torch.manual_seed(3)
    replaced = (prior._own_draws(head.trunk, x)[:, 1:] == 0).all(-1)  # (B, T-1): whole frames or none
    assert replaced.any() and not replaced.all()


@pytest.mark.parametrize("name", list(HEADS))
def test_scheduled_sampling_trains_on_mixed_inputs_only_in_training(name):
    x = codes()
    plain, mixed = prior_head(name), prior_head(name, scheduled_sampling=1.0)
    loss_plain = plain(Latents(torch.zeros(*x.shape, 8), x))["loss"]
    loss_mixed = mixed(Latents(torch.zeros(*x.shape, 8), x))["loss"]
    assert torch.isfinite(loss_mixed) and not torch.allclose(loss_plain, loss_mixed)
    loss_mixed.backward()
    assert all(p.grad is not None for p in mixed.trunk.parameters() if p.requires_grad)
    plain.eval(), mixed.eval()
    with torch.no_grad():  # evaluation scores teacher-forced inputs, as without it
        assert torch.allclose(plain(Latents(torch.zeros(*x.shape, 8), x))["loss"],
                              mixed(Latents(torch.zeros(*x.shape, 8), x))["loss"])


def test_scheduled_sampling_refuses_bad_values_and_maskgit():
    with pytest.raises(ValueError, match="scheduled_sampling must lie in"):
        prior_head("mamba", scheduled_sampling=1.5)
    with pytest.raises(ValueError, match="frame_decoding=independent"):
        prior_head("mamba", scheduled_sampling=0.5, frame_decoding="maskgit")


@pytest.mark.parametrize(("name", "kw", "sampling", "expected"), [
    ("mamba", {}, {}, False),
    ("mamba", {}, {"greedy": True}, True),
    ("mamba", {"frame_decoding": "maskgit"}, {"greedy": True}, False),  # Gumbel noise on the confidences
    ("mamba", {"frame_decoding": "maskgit"}, {"greedy": True, "choice_temperature": 0.0}, True),
    ("mamba", {"objective": "regression", "input_noise": 0.0}, {}, True),
    ("transformer", {"objective": "regression"}, {}, True),
])
def test_heads_say_whether_their_rollouts_are_deterministic(name, kw, sampling, expected):
    head = prior_head(name, **kw)
    head.sampling = sampling
    assert head.deterministic is expected
    if expected and head.needs_codes:
        c = codes(2, 3)
        z = Latents(torch.zeros(*c.shape, 8), c)
        assert torch.equal(head.rollout(z, 2).codes, head.rollout(z, 2).codes)

