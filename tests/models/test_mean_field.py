"""Mean-field rollouts of the frame-ordered code priors (``head.params.sampling.mean_field``), on both
trunks: futurelat/models/heads/objectives/code_prior.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from futurelat.models.base import Latents
from futurelat.models.heads.sampling import sampling_options
from futurelat.models.latent_video_model import build_model

from composing import tiny_config
from head_checks import PRIOR_SPEC, TINY_PRIORS, make_head

SPEC, HEADS = PRIOR_SPEC, TINY_PRIORS


def prior_head(name: str, patch_size: int = 1, **sampling):
    """A frame-ordered prior with random (perturbed) weights and a random codebook attached."""
    torch.manual_seed(0)
    head = make_head(name, SPEC, 6, ordering="frame", patch_size=patch_size,
                     **{**HEADS[name], "sampling": {"mean_field": True, **sampling}}).eval()
    with torch.no_grad():  # (the transformer's output layer starts at zero)
        for p in head.parameters():
            p.add_(0.3 * torch.randn_like(p))
    codebook = torch.randn(SPEC.codebook_size, SPEC.latent_dim)
    head.objective.code_vectors = lambda codes: F.embedding(codes, codebook)
    return head, codebook


def random_codes(batch: int = 2, frames: int = 3, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, SPEC.codebook_size, (batch, frames, SPEC.tokens_per_frame), generator=g)


@pytest.mark.parametrize("patch_size", [1, 2])
def test_expected_embedding_of_one_hot_distributions_is_the_codes_embedding(patch_size):
    head, _ = prior_head("mamba", patch_size=patch_size)
    prior, codes = head.objective, random_codes()
    one_hot = F.one_hot(codes, SPEC.codebook_size).float()
    torch.testing.assert_close(prior.embed_expected(one_hot), prior.embed_frames(codes))
    mixed = 0.25 * one_hot + 0.75 * F.one_hot(codes.flip(-1), SPEC.codebook_size).float()
    torch.testing.assert_close(prior.embed_expected(mixed),
                               0.25 * prior.embed_frames(codes) + 0.75 * prior.embed_frames(codes.flip(-1)))


@pytest.mark.parametrize("name,patch_size", [("mamba", 1), ("mamba", 2), ("transformer", 1)])
def test_rollout_with_the_trunks_state_equals_rerunning_the_expected_sequence(name, patch_size):
    """Each step's distribution comes from the context and the expected embeddings of the frames
    before it, as a full re-run over that sequence computes them; the output is the expected vector."""
    head, codebook = prior_head(name, patch_size=patch_size, temperature=0.7)
    prior, context = head.objective, random_codes()
    future = head.rollout(Latents(torch.empty(*context.shape, 0), context), 3)
    assert future.codes is None and future.latents.shape == (2, 3, SPEC.tokens_per_frame, SPEC.latent_dim)
    tokens, expected = prior.embed_frames(context), []
    with torch.no_grad():
        for _ in range(3):
            logits = prior.frame_logits(head.trunk(tokens))[:, -1]  # (B, N, K) of the next frame
            probs = torch.softmax(logits / 0.7, dim=-1)
            expected.append(probs @ codebook)
            tokens = torch.cat([tokens, prior.embed_expected(probs[:, None])], dim=1)
    torch.testing.assert_close(future.latents, torch.stack(expected, dim=1), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", list(HEADS))
def test_top_1_mean_field_is_the_greedy_rollout(name):
    """With one code left (top_k = 1) the distribution is one-hot: the expected vector is the argmax
    code's vector and the expected embedding is that code's, so the rollout is greedy decoding's."""
    head, codebook = prior_head(name, top_k=1)
    context = random_codes()
    z = Latents(torch.empty(*context.shape, 0), context)
    mean_field = head.rollout(z, 4).latents
    head.sampling = {"greedy": True}
    greedy = head.rollout(z, 4).codes
    torch.testing.assert_close(mean_field, F.embedding(greedy, codebook))


def test_mean_field_rollouts_are_deterministic_and_the_evaluator_draws_one_future():
    head, _ = prior_head("mamba")
    context = random_codes()
    z = Latents(torch.empty(*context.shape, 0), context)
    assert head.deterministic
    torch.testing.assert_close(head.rollout(z, 3).latents, head.rollout(z, 3).latents)
    at_1 = head.rollout(z, 3).latents
    head.sampling = {"mean_field": True, "temperature": 0.5}
    assert (head.rollout(z, 3).latents - at_1).abs().max() > 1e-3  # the distribution it averages over
    head.sampling = {}
    assert not head.deterministic


def test_mean_field_refuses_what_it_cannot_average():
    with pytest.raises(ValueError, match="mean_field and head.sampling.greedy exclude each other"):
        sampling_options({"mean_field": True, "greedy": True})
    context = random_codes()
    z = Latents(torch.empty(*context.shape, 0), context)
    for name, kw in (("mamba", dict(ordering="token")), ("mamba", dict(frame_decoding="maskgit")),
                     ("transformer", dict(ordering="token", position="alibi"))):
        with pytest.raises(ValueError, match="needs ordering=frame with frame_decoding=independent"):
            make_head(name, SPEC, 6, **{**HEADS[name], **kw, "sampling": {"mean_field": True}})  # refused when built
    head = make_head("mamba", SPEC, 6, ordering="token", **HEADS["mamba"])
    head.sampling = {"mean_field": True}  # changed after the build: refused by the rollout
    with pytest.raises(ValueError, match="needs ordering=frame with frame_decoding=independent"):
        head.rollout(z, 1)
    unattached = make_head("mamba", SPEC, 6, **{**HEADS["mamba"], "sampling": {"mean_field": True}})
    with pytest.raises(RuntimeError, match="needs the backbone's codebook vectors"):
        unattached.rollout(z, 1)


def test_the_builder_attaches_the_codebook_and_the_model_decodes_the_snapped_expectation():
    cfg = tiny_config(["head.params.sampling.mean_field=true"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    channels, size = model.backbone.in_channels, int(cfg.dataset.image_size)
    frames = torch.rand(2, int(cfg.dataset.context_frames), channels, size, size)
    z = model.encode(frames)
    expected = model.head.rollout(z, 2)
    torch.testing.assert_close(model.head.objective.code_vectors(z.codes), z.latents)
    decoded = model.backbone.decode(Latents(expected.latents, model.backbone.snap(expected.latents))).clamp(0, 1)
    torch.testing.assert_close(model.rollout(frames, 2), decoded)
    assert model.deterministic
