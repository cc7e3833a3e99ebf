"""Sampled static tokens in the code priors' loss (``head.params.static_keep``,
futurelat/models/heads/objectives/patch_loss.py): every moving token scored, a share of the static ones
weighted by its inverse, so the loss is an unbiased estimate of the full one."""

from __future__ import annotations

import pytest
import torch

from futurelat.models.base import Latents
from futurelat.models.heads.sampling import code_cross_entropy

from head_checks import PRIOR_SPEC, TINY_PRIORS, make_head, perturbed_prior

SPEC = PRIOR_SPEC


def half_static_clip() -> Latents:
    """Codes ``(2, 6, N)`` whose left half of every frame never changes and whose right half is random."""
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, SPEC.codebook_size, (2, 6, *SPEC.grid), generator=g)
    codes[..., : SPEC.grid[1] // 2] = codes[:, :1, :, : SPEC.grid[1] // 2]
    codes = codes.flatten(2)
    return Latents(torch.zeros(*codes.shape, 8), codes)


@pytest.mark.parametrize("name", list(TINY_PRIORS))
def test_full_patch_order_loss_equals_the_raster_cross_entropy(name):
    head, z = perturbed_prior(name, patch_size=2), half_static_clip()
    head.eval()
    with torch.no_grad():
        expected = code_cross_entropy(head.logits(z.codes), z.codes[:, 1:])
        got = head(z)
    torch.testing.assert_close(got["loss"], expected["loss"])
    torch.testing.assert_close(got["accuracy"], expected["accuracy"])


@pytest.mark.parametrize("name", list(TINY_PRIORS))
def test_sampled_static_tokens_give_an_unbiased_loss_and_gradient_for_every_weight(name):
    full, sampled = perturbed_prior(name, patch_size=2), perturbed_prior(name, patch_size=2, static_keep=0.3)
    z = half_static_clip()
    full.train(), sampled.train()
    target = full(z)["loss"]
    torch.manual_seed(0)
    with torch.no_grad():
        draws = [sampled(z) for _ in range(400)]
    losses = torch.stack([d["loss"] for d in draws])
    assert losses.std() > 0  # the static tokens kept differ per draw
    assert abs(losses.mean() - target) < 4 * losses.std() / 20  # 4 standard errors of the mean of 400
    share = torch.stack([d["scored_share"] for d in draws]).mean()
    # the left half is static (all its patches), the right half moves: 0.5 + 0.5 * 0.3 of the tokens
    assert share == pytest.approx(0.5 + 0.5 * 0.3, abs=0.02)
    loss = sampled(z)["loss"]
    loss.backward()
    assert all(p.grad is not None for p in sampled.trunk.parameters() if p.requires_grad)


def test_only_training_samples_static_tokens():
    full, sampled = perturbed_prior("mamba", patch_size=2), perturbed_prior("mamba", patch_size=2, static_keep=0.3)
    full.eval(), sampled.eval()
    z = half_static_clip()
    with torch.no_grad():
        torch.testing.assert_close(sampled(z)["loss"], full(z)["loss"])


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.5])
def test_static_keep_out_of_range_is_refused_naming_the_key(bad):
    with pytest.raises(ValueError, match=r"head.params.static_keep must lie in \(0, 1\]"):
        perturbed_prior("mamba", static_keep=bad)


def test_static_keep_refuses_what_it_cannot_sample():
    with pytest.raises(ValueError, match="unroll_frames=0"):
        perturbed_prior("mamba", static_keep=0.5, unroll_frames=2)
    with pytest.raises(ValueError, match="frame_decoding=independent"):
        perturbed_prior("mamba", static_keep=0.5, frame_decoding="maskgit")
    with pytest.raises(ValueError, match="ordering=frame"):
        make_head("mamba", SPEC, 6, **{**TINY_PRIORS["mamba"], "ordering": "token", "static_keep": 0.5})
