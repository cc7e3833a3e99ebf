"""Motion copy in the frame-ordered code priors (``head.params.motion_copy``,
futurelat/models/heads/objectives/motion_copy.py): each next frame's distribution mixes the prior's own
with the previous frame's codes moved by per-position offsets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from futurelat.models.base import Latents
from futurelat.models.heads.objectives.motion_copy import MotionCopy
from futurelat.models.heads.patches import patchify
from futurelat.models.heads.sampling import code_cross_entropy

from head_checks import PRIOR_SPEC, TINY_PRIORS, make_head, perturbed_prior

SPEC = PRIOR_SPEC  # a 4 x 4 grid of 16 codes


def random_codes(batch: int = 2, frames: int = 6, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, SPEC.codebook_size, (batch, frames, SPEC.tokens_per_frame), generator=g)


def copying(offset: tuple[int, int], grid=(6, 6), patch_size: int = 2, num_codes: int = 5) -> MotionCopy:
    """A MotionCopy whose every position copies from ``offset`` (almost surely) and never generates."""
    copy = MotionCopy(4, 1, grid, patch_size, num_codes)
    with torch.no_grad():
        copy.to_weights.weight.zero_()
        bias = torch.full((len(copy.offsets) + patch_size ** 2,), -30.0)
        bias[copy.offsets.index(offset)] = 30.0
        copy.to_weights.bias.copy_(bias)  # the gates' logits stay at -30: g = sigmoid(-30)
    return copy


def test_a_copying_prior_predicts_the_previous_frame_moved_by_its_offset():
    """Sources one cell to the left: a frame whose content moved right by one cell is predicted exactly,
    with the left column (no source inside the grid for that offset) falling back on the other offsets."""
    copy, (h, w), k = copying((0, -1)), (6, 6), 5
    g = torch.Generator().manual_seed(0)
    prev = torch.randint(0, k, (1, h, w), generator=g)
    log_probs = copy.log_probs(torch.zeros(1, h * w, k), torch.zeros(1, 9, 4), F.one_hot(prev.flatten(1), k).float())
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(1, h * w))
    moved = log_probs.argmax(-1).view(1, h, w)
    assert torch.equal(moved[..., 1:], prev[..., :-1])
    assert log_probs.exp().max(-1).values.view(1, h, w)[..., 1:].min() > 0.999
    # training scores the same mixture: targets that moved right cost nothing away from the left column
    sources = copy.sources(prev.flatten(1)[:, None])[0, 0]  # (M, p*p, O)
    targets = torch.roll(prev, 1, dims=-1).flatten(1)[:, None]  # the left column wraps around: not a copy
    target_patches = patchify(targets[..., None], (h, w), 2)[0, 0]  # (M, p*p)
    nll, hit = copy.loss_terms(torch.zeros(9, 4, k), torch.zeros(9, 4), sources, target_patches)
    inside = patchify(torch.arange(w).expand(1, 1, h, w).flatten(2)[..., None], (h, w), 2)[0, 0] > 0
    assert nll[inside].max() < 1e-3 and hit[inside].all()


@pytest.mark.parametrize("name", list(TINY_PRIORS))
def test_teacher_forced_mixture_is_a_distribution_and_the_loss_scores_it(name):
    """The loss's per-target mixture (training path) and the full mixture (rollout path) agree."""
    head = perturbed_prior(name, patch_size=2, motion_copy=1).eval()
    codes = random_codes()
    with torch.no_grad():
        log_probs = head.logits(codes)
        expected = code_cross_entropy(log_probs, codes[:, 1:])
        got = head(Latents(torch.zeros(*codes.shape, 8), codes))
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(log_probs.shape[:-1]))
    torch.testing.assert_close(got["loss"], expected["loss"])
    torch.testing.assert_close(got["accuracy"], expected["accuracy"])
    plain = perturbed_prior(name, patch_size=2).eval()
    with torch.no_grad():
        assert (plain(Latents(torch.zeros(*codes.shape, 8), codes))["loss"] - got["loss"]).abs() > 1e-3


def test_training_reaches_the_copy_weights_and_the_sampled_loss_runs():
    head = perturbed_prior("mamba", patch_size=2, motion_copy=1, static_keep=0.5).train()
    codes = random_codes()
    out = head(Latents(torch.zeros(*codes.shape, 8), codes))
    out["loss"].backward()
    assert head.objective.copy.to_weights.weight.grad.abs().sum() > 0
    assert 0 < out["scored_share"] <= 1


@pytest.mark.parametrize("name,mean_field", [("mamba", True), ("mamba", False), ("transformer", True),
                                             ("transformer", False)])
def test_rollouts_step_the_mixture_of_the_frame_just_read(name, mean_field):
    """A rollout's first frame comes from the context's last frame; its next from the frame it just fed:
    the same distributions as the teacher-forced mixture of the sequence it built."""
    sampling = {"mean_field": True} if mean_field else {"greedy": True}
    head = perturbed_prior(name, patch_size=2, motion_copy=1, sampling=sampling).eval()
    codebook = torch.randn(SPEC.codebook_size, SPEC.latent_dim)
    head.objective.code_vectors = lambda c: F.embedding(c, codebook)
    context = random_codes(frames=3)
    with torch.no_grad():
        future = head.rollout(Latents(torch.empty(*context.shape, 0), context), 2)
        if mean_field:
            first = head.logits(torch.cat([context, context[:, :1]], 1))[:, 2].exp()  # (B, N, K) of frame 3
            torch.testing.assert_close(future.latents[:, 0], first @ codebook, atol=1e-5, rtol=1e-5)
        else:
            full = torch.cat([context, future.codes], 1)
            torch.testing.assert_close(head.logits(full)[:, 2:4].argmax(-1), future.codes)


def test_motion_copy_refuses_what_it_cannot_mix_naming_the_key():
    with pytest.raises(ValueError, match="head.params.motion_copy must be >= 1"):
        perturbed_prior("mamba", motion_copy=-1)
    for kw in (dict(frame_decoding="maskgit"), dict(unroll_frames=2, static_keep=1.0),
               dict(scheduled_sampling=0.5)):
        with pytest.raises(ValueError, match="head.params.motion_copy mixes"):
            perturbed_prior("mamba", motion_copy=1, **kw)
    with pytest.raises(ValueError, match="head.params.motion_copy mixes"):
        make_head("mamba", SPEC, 6, **{**TINY_PRIORS["mamba"], "ordering": "token", "motion_copy": 1})
