"""Gradient checkpointing per trunk block (futurelat/models/heads/checkpointing.py) in the transformer,
flow_dit and mamba heads: the same loss and gradients as the plain run, bit for bit, and no effect outside training."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from futurelat.models.base import LatentSpec, Latents
from futurelat.models.heads.checkpointing import CheckpointableBlocks, set_gradient_checkpointing

from head_checks import make_head

SPEC = LatentSpec(latent_dim=4, grid=(4, 4), codebook_size=8)
FRAMES, CONTEXT = 5, 3
TRANSFORMER = dict(d_model=24, num_layers=2, num_heads=2, mlp_ratio=2.0, patch_size=2, context_latents=CONTEXT,
                   sampling=None)
DIT = dict(d_model=24, num_layers=2, num_heads=2, mlp_ratio=2.0, patch_size=2, context_latents=CONTEXT,
           context_dropout=0.3, sampling={"solver": "euler", "steps": 2})
MAMBA = dict(d_model=16, num_layers=2, d_state=8, head_dim=8, chunk_size=4, patch_size=1, backend="torch",
             input_noise=0.0, static_keep=1.0, sampling=None)
# (head, params): every trunk variant, with dropout (and input noise) on, so the recompute must redraw
# the same random numbers.
VARIANTS = {
    "transformer-regression-convs": ("transformer", dict(TRANSFORMER, objective="regression", dropout=0.2,
                                                         spatial_kernel=3, temporal_kernel=3,
                                                         conv_factorization="2+1d")),
    "transformer-regression-factorized": ("transformer", dict(TRANSFORMER, objective="regression", dropout=0.2,
                                                              attention="factorized")),
    "transformer-ar-frame": ("transformer", dict(TRANSFORMER, objective="autoregressive", dropout=0.2)),
    "transformer-ar-token": ("transformer", dict(TRANSFORMER, objective="autoregressive", ordering="token",
                                                 position="alibi", dropout=0.2)),
    "flow_dit-in_context": ("flow_dit", dict(DIT, dropout=0.2, position="rope")),
    "flow_dit-cross_attention": ("flow_dit", dict(DIT, dropout=0.2, conditioning="cross_attention")),
    "mamba-ar-frame": ("mamba", dict(MAMBA, dropout=0.2, input_noise=0.2)),
    "mamba-ar-token": ("mamba", dict(MAMBA, ordering="token", dropout=0.2)),
    "mamba-regression": ("mamba", dict(MAMBA, objective="regression", dropout=0.2, input_noise=0.1)),
}


def build(variant: str) -> nn.Module:
    """The tiny head, every parameter perturbed (zero-initialised output layers would zero most
    gradients and make the comparison vacuous), standardizers fitted, in training mode."""
    name, params = VARIANTS[variant]
    torch.manual_seed(0)
    head = make_head(name, SPEC, FRAMES, **params)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.1 * torch.randn_like(p))
        head.train()(clip())  # the first training batch fits the latent standardization
    return head


def clip(batch: int = 2) -> Latents:
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(batch, FRAMES, SPEC.tokens_per_frame, SPEC.latent_dim, generator=g)
    codes = torch.randint(0, SPEC.codebook_size, (batch, FRAMES, SPEC.tokens_per_frame), generator=g)
    return Latents(latents=latents, codes=codes)


def count_block_calls(head: nn.Module) -> list[int]:
    """A counter of forward calls of ``head.blocks`` (one entry, updated in place)."""
    calls = [0]
    for block in head.blocks:
        block.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def loss_and_grads(head: nn.Module, seed: int = 7) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    torch.manual_seed(seed)  # noise, flow times, dropout masks and input noise are drawn from here
    loss = head(clip())["loss"]
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in head.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_checkpointed_gradients_equal_the_plain_run(variant):
    plain = build(variant)
    ckpt = copy.deepcopy(plain)
    assert set_gradient_checkpointing(ckpt) == len(ckpt.blocks) == 2
    calls = count_block_calls(ckpt)
    loss, grads = loss_and_grads(plain)
    loss_ckpt, grads_ckpt = loss_and_grads(ckpt)
    assert calls[0] == 2 * len(ckpt.blocks)  # every block ran again in backward: checkpointing happened
    torch.testing.assert_close(loss_ckpt, loss, rtol=0, atol=0)
    assert grads_ckpt.keys() == grads.keys()
    for name in grads:
        torch.testing.assert_close(grads_ckpt[name], grads[name], rtol=0, atol=0, msg=name)
    assert sum(bool(g.abs().sum() > 0) for g in grads.values()) >= 0.8 * len(grads)  # gradients reach the trunk


@pytest.mark.parametrize("variant", ["transformer-ar-frame", "transformer-regression-convs", "flow_dit-in_context",
                                     "mamba-ar-token", "mamba-regression"])
def test_rollout_with_checkpointing_on_matches_the_plain_head(variant):
    plain = build(variant)
    ckpt = copy.deepcopy(plain)
    set_gradient_checkpointing(ckpt)
    calls = count_block_calls(ckpt)
    context = Latents(clip().latents[:, :CONTEXT], clip().codes[:, :CONTEXT])
    out = [head.rollout(context, 2, generator=torch.Generator().manual_seed(3)) for head in (plain, ckpt)]
    torch.testing.assert_close(out[1].latents, out[0].latents, rtol=0, atol=0)
    if out[0].codes is not None:
        assert torch.equal(out[1].codes, out[0].codes)
    assert ckpt.training and calls[0] > 0  # rollout restored training mode; the blocks ran


def test_no_checkpointing_without_grad_in_eval_or_with_a_kv_cache():
    head = build("transformer-ar-frame")
    set_gradient_checkpointing(head)
    calls = count_block_calls(head)
    codes = clip().codes
    with torch.no_grad():
        head(clip())
    head.eval()
    head(clip())["loss"].backward()
    head.train()
    logits, caches = head.prefill(codes[:, :CONTEXT])  # training mode, grad on: the cache is appended once
    head.step(codes[:, CONTEXT], caches)
    assert calls[0] == 4 * len(head.blocks)  # one call per block each time, never a recompute
    assert caches[0].length == (CONTEXT + 1) * head.trunk.frame_tokens


def test_set_gradient_checkpointing_counts_and_switches_off():
    head = build("mamba-ar-frame")
    assert set_gradient_checkpointing(nn.Sequential(nn.Linear(2, 2), nn.ReLU())) == 0
    assert set_gradient_checkpointing(nn.ModuleDict({"a": head, "b": copy.deepcopy(head)})) == 4
    assert head.blocks.gradient_checkpointing
    assert set_gradient_checkpointing(head, enabled=False) == 2 and not head.blocks.gradient_checkpointing
    blocks = CheckpointableBlocks([nn.Linear(2, 2)])
    assert isinstance(blocks, nn.ModuleList) and list(blocks.state_dict()) == ["0.weight", "0.bias"]
