"""Whole-frame (MaskGIT) decoding of the frame-ordered code priors, on both trunks
(futurelat/models/heads/objectives/code_prior.py, the trunks' ``peek``)."""

from __future__ import annotations

import math

import pytest
import torch

from futurelat.models.base import Latents
from futurelat.models.heads.objectives.maskgit import cosine_mask, fill_frame
from futurelat.models.heads.sampling import sampling_options

from head_checks import PRIOR_SPEC, TINY_PRIORS, make_head

SPEC, HEADS = PRIOR_SPEC, TINY_PRIORS
STEPS = 40


def maskgit_head(name: str, patch_size: int = 1, **kw):
    torch.manual_seed(0)
    return make_head(name, SPEC, 6, ordering="frame", patch_size=patch_size, frame_decoding="maskgit",
                     **{**HEADS[name], **kw})


def random_codes(batch: int = 2, frames: int = 6, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, SPEC.codebook_size, (batch, frames, SPEC.tokens_per_frame), generator=g)


def test_cosine_mask_hides_at_least_one_code_and_about_the_schedules_share():
    torch.manual_seed(0)
    mask = cosine_mask((4000, 16), torch.device("cpu"))
    counts = mask.sum(-1).float()
    assert counts.min() >= 1 and counts.max() <= 16
    # E[ceil(16 cos(pi u / 2))] ~ 16 * 2/pi + 0.5 = 10.7
    assert abs(counts.mean().item() - (16 * 2 / math.pi + 0.5)) < 0.3


@pytest.mark.parametrize("name", list(HEADS))
def test_the_next_frames_hidden_codes_and_later_frames_never_reach_its_prediction(name):
    """Prediction of frame t + 1 reads frames <= t and the visible codes of frame t + 1 only."""
    head = maskgit_head(name).eval()
    prior, codes = head.objective, random_codes()
    with torch.no_grad():  # (the transformer's output layer starts at zero)
        for p in head.parameters():
            p.add_(0.1 * torch.randn_like(p))
    visible = codes[:, 1:].clone()
    visible[:, :, ::2] = SPEC.codebook_size  # every other code of each next frame hidden

    def logits(c, v):
        return prior.frame_logits(head.trunk(prior.embed_frames(c[:, :-1]) + prior.embed_next(v)))

    base = logits(codes, visible)
    later = codes.clone()
    later[:, 4:] = (later[:, 4:] + 1) % SPEC.codebook_size  # frames 4, 5 changed
    later_visible = later[:, 1:].clone()
    later_visible[:, :, ::2] = SPEC.codebook_size
    moved = logits(later, later_visible)
    assert torch.equal(base[:, :3], moved[:, :3])  # rows 0..2 predict frames 1..3
    assert not torch.allclose(base[:, 3:], moved[:, 3:])  # row 3 sees frame 4's visible codes


@pytest.mark.parametrize("name", list(HEADS))
@pytest.mark.parametrize("context", [1, 3])
def test_rollout_with_the_trunks_state_equals_rerunning_the_whole_sequence(name, context):
    """Greedy rollouts: peek/step on the KV cache or recurrent state give the codes a naive loop gets by
    running every pass over the whole sequence from frame 0."""
    head = maskgit_head(name, sampling={"greedy": True, "steps": 3}).eval()
    prior, codes = head.objective, random_codes()[:, :context]
    with torch.no_grad():
        fast = head.rollout(Latents(torch.zeros(*codes.shape, 8), codes), 3).codes
        frames, options = codes, sampling_options({"greedy": True, "steps": 3})
        for _ in range(3):
            def features(visible, frames=frames):
                nexts = torch.cat([frames[:, 1:], visible[:, None]], dim=1)
                return head.trunk(prior.embed_frames(frames) + prior.embed_next(nexts))[:, -prior.frame_tokens:]
            frame = fill_frame(prior, features, frames[:, -1].shape, options, None)
            frames = torch.cat([frames, frame[:, None]], dim=1)
    assert torch.equal(fast, frames[:, context:])


def test_each_pass_leaves_the_schedules_number_of_codes_masked():
    head = maskgit_head("mamba")
    prior, seen = head.objective, []

    def features(visible):
        seen.append(int((visible == SPEC.codebook_size).sum()))
        return torch.randn(1, prior.frame_tokens, 32)

    for steps in (1, 4, 8):
        seen.clear()
        frame = fill_frame(prior, features, torch.Size((1, 16)), sampling_options({"steps": steps}), None)
        after = [min(math.floor(16 * math.cos(math.pi / 2 * (k + 1) / steps)), 15 - k) for k in range(steps)]
        assert seen == [16] + [max(a, 0) for a in after[:-1]], steps
        assert frame.min() >= 0 and frame.max() < SPEC.codebook_size


def test_a_trained_maskgit_prior_rolls_a_pattern_forward():
    """Codes that shift one position per frame: after training, 4 passes per frame roll the shift forward.
    (The transformer trunk; the objective is the same code on the Mamba trunk, whose state handling the
    test above checks.)"""
    head = maskgit_head("transformer", sampling={"greedy": True, "steps": 4})
    base = torch.arange(16) % SPEC.codebook_size
    clips = torch.stack([torch.stack([(base + s + t) % 16 for t in range(5)]) for s in range(16)])  # (16, 5, 16)
    optimizer = torch.optim.AdamW(head.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for _ in range(STEPS):
        loss = head(z=Latents(torch.zeros(*clips.shape, 8), clips))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    head.eval()
    with torch.no_grad():
        future = head.rollout(Latents(torch.zeros(16, 3, 16, 8), clips[:, :3]), 2).codes
    assert (future == clips[:, 3:]).float().mean() > 0.95


def test_maskgit_needs_the_frame_ordering_and_its_prior_refuses_single_frame_steps():
    with pytest.raises(ValueError, match="frame_decoding=maskgit fills whole frames and needs head.params.ordering=frame"):
        make_head("transformer", SPEC, 6, objective="autoregressive", ordering="token", frame_decoding="maskgit",
                  context_latents=3)
    with pytest.raises(ValueError, match="head.params.frame_decoding must be one of"):
        make_head("mamba", SPEC, 6, frame_decoding="parallel")
    with pytest.raises(ValueError, match="use rollout|filled by rollout"):
        maskgit_head("mamba").prefill(random_codes())
    with pytest.raises(ValueError, match="head.sampling.steps must be >= 1"):
        sampling_options({"steps": 0})
