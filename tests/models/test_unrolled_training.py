"""Unrolled (mean-field) training of the frame-ordered code priors: the last input frames of a training
clip are the prior's own expected code embeddings (futurelat/models/heads/objectives/code_prior.py)."""

from __future__ import annotations

import pytest
import torch

from futurelat.models.base import Latents

from head_checks import PRIOR_SPEC, TINY_PRIORS, perturbed_prior

SPEC, HEADS = PRIOR_SPEC, TINY_PRIORS


def prior_head(name: str, **kw):
    return perturbed_prior(name, patch_size=2, **kw)


def clip(frames: int = 6) -> torch.Tensor:
    return torch.randint(0, SPEC.codebook_size, (2, frames, SPEC.tokens_per_frame),
                         generator=torch.Generator().manual_seed(1))


def unrolled_by_full_passes(head, codes: torch.Tensor, unroll: int) -> torch.Tensor:
    """The same logits without the recurrent state: one full causal pass per fed-back frame."""
    prior = head.objective
    inputs = torch.nn.functional.one_hot(codes[:, :-1], SPEC.codebook_size).float()  # (B, T-1, N, K)
    true_inputs = inputs.shape[1] - unroll
    for t in range(true_inputs, inputs.shape[1]):  # input t is the expectation of the prediction of frame t
        logits = prior.frame_logits(head.trunk(prior.embed_expected(inputs)))
        inputs[:, t] = torch.softmax(logits[:, t - 1].float(), -1)
    return prior.frame_logits(head.trunk(prior.embed_expected(inputs)))


@pytest.mark.parametrize("name", list(HEADS))
@pytest.mark.parametrize("unroll", [1, 4])
def test_unrolled_logits_feed_back_the_priors_expected_frames(name, unroll):
    head = prior_head(name, unroll_frames=unroll)
    codes = clip()
    with torch.no_grad():
        unrolled = head.objective._unrolled_logits(head.trunk, codes)  # prefill, then one step per frame
        expected = unrolled_by_full_passes(head, codes, unroll)
        teacher = head.logits(codes)
    assert unrolled.shape == teacher.shape == (2, 5, SPEC.tokens_per_frame, SPEC.codebook_size)
    torch.testing.assert_close(unrolled, expected, atol=2e-4, rtol=1e-4)
    true_inputs = 5 - unroll  # frames 1 .. 5 - unroll are predicted from true frames alone
    torch.testing.assert_close(unrolled[:, :true_inputs], teacher[:, :true_inputs], atol=2e-4, rtol=1e-4)
    assert not torch.allclose(unrolled[:, true_inputs:], teacher[:, true_inputs:], atol=1e-3)


@pytest.mark.parametrize("name", list(HEADS))
def test_unrolled_training_trains_on_fed_back_frames_only_in_training(name):
    codes = clip()
    z = Latents(torch.zeros(*codes.shape, 8), codes)
    plain, unrolled = prior_head(name), prior_head(name, unroll_frames=4)
    loss = unrolled(z)["loss"]
    assert torch.isfinite(loss) and not torch.allclose(loss, plain(z)["loss"])
    loss.backward()
    assert all(p.grad is not None for p in unrolled.trunk.parameters() if p.requires_grad)
    plain.eval(), unrolled.eval()
    with torch.no_grad():  # evaluation scores teacher-forced inputs, as without it
        torch.testing.assert_close(plain(z)["loss"], unrolled(z)["loss"])


def test_unrolled_training_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="unroll_frames must be >= 0"):
        prior_head("mamba", unroll_frames=-1)
    with pytest.raises(ValueError, match="frame_decoding=independent and scheduled_sampling=0"):
        prior_head("mamba", unroll_frames=2, frame_decoding="maskgit")
    with pytest.raises(ValueError, match="frame_decoding=independent and scheduled_sampling=0"):
        prior_head("mamba", unroll_frames=2, scheduled_sampling=0.5)
    head = prior_head("mamba", unroll_frames=5)  # clips of 6 frames leave no true input frame
    codes = clip()
    with pytest.raises(ValueError, match=r"unroll_frames=5 leaves no true input frame .* must be <= 4"):
        head(Latents(torch.zeros(*codes.shape, 8), codes))
