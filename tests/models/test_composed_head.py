"""A head as a trunk plus an objective (futurelat/models/heads/composed.py): one objective on two
trunks, the fit check, and checkpoints written before the split."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from futurelat.models.base import LatentSpec, Latents
from futurelat.models.heads.composed import ComposedHead
from futurelat.models.heads.objectives.code_prior import CodePrior
from futurelat.models.heads.objectives.latent_regression import BlockRegression, NextFrameRegression
from futurelat.models.heads.pixel_loss import DecodedPixelLoss
from futurelat.models.heads.trunks.mamba import MambaFrameTrunk
from futurelat.models.heads.trunks.transformer import TransformerTrunk

from head_checks import make_head

SPEC = LatentSpec(latent_dim=3, grid=(4, 4))
WIDTH = 24


def transformer_trunk(mask: str) -> TransformerTrunk:
    return TransformerTrunk(d_model=WIDTH, num_layers=2, num_heads=2, mlp_ratio=2.0, dropout=0.0, position="rope",
                            mask=mask, attention="full", grid=SPEC.grid, query_chunk=64, spatial_kernel=0,
                            temporal_kernel=1, conv_factorization="joint")


def mamba_trunk() -> MambaFrameTrunk:
    return MambaFrameTrunk(d_model=WIDTH, num_layers=2, grid=SPEC.grid, d_state=8, expand=2, head_dim=12,
                           conv_kernel=4, chunk_size=4, backend="torch", spatial_kernel=3, mlp_ratio=2.0, dropout=0.0)


def next_frame() -> NextFrameRegression:
    return NextFrameRegression(SPEC, patch_size=1, width=WIDTH, loss="mse", input_noise=0.0,
                               pixel_loss=DecodedPixelLoss(0.0, 1), name="test")


def moving_blob(num_clips: int = 4, frames: int = 6) -> torch.Tensor:
    """Latents ``(B, T, 16, 3)``: one bright cell moving one column right per frame on a -1 background."""
    clips = -torch.ones(num_clips, frames, 4, 4, 3)
    for i in range(num_clips):
        for t in range(frames):
            clips[i, t, i % 4, (i + t) % 4] = torch.tensor([2.0, 1.0, 3.0])
    return clips.flatten(2, 3)


@pytest.mark.parametrize("trunk", ["mamba", "transformer"])
def test_next_frame_regression_runs_on_the_mamba_and_the_transformer_trunk(trunk):
    torch.manual_seed(0)
    head = ComposedHead(mamba_trunk() if trunk == "mamba" else transformer_trunk("block"), next_frame(), name=trunk)
    latents = moving_blob()
    opt = torch.optim.AdamW(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        out = head(Latents(latents))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert set(out) == {"loss", "l1", "mse", "cosine"} and losses[-1] < 0.5 * losses[0]
    future = head.rollout(Latents(latents[:, :3]), 4)
    assert future.latents.shape == (4, 4, 16, 3) and future.codes is None and head.training
    # The rollout's recurrent steps (state or KV cache) continue the teacher-forced parallel pass exactly.
    head.eval()
    with torch.no_grad():
        x = head.objective.standardizer(latents)
        parallel = head.objective.predict(head.trunk, x[:, :-1])  # (B, 5, N, D): predictions of frames 1..5
        pred, state = head.objective.prefill(head.trunk, x[:, :3])
        torch.testing.assert_close(pred, parallel[:, 2], atol=1e-5, rtol=1e-5)
        for t in (3, 4):
            pred, state = head.objective.step(head.trunk, x[:, t], state)
            torch.testing.assert_close(pred, parallel[:, t], atol=1e-5, rtol=1e-5)


def test_block_regression_runs_on_a_mamba_trunk():
    torch.manual_seed(0)
    objective = BlockRegression(SPEC, 6, context_latents=3, patch_size=1, width=WIDTH, loss="l1", target="residual",
                                pixel_loss=DecodedPixelLoss(0.0, 1), name="test")
    head = ComposedHead(mamba_trunk(), objective)
    out = head(Latents(moving_blob()))
    out["loss"].backward()
    assert out["loss"].ndim == 0 and head.trunk.blocks[0].temporal.in_proj.weight.grad.abs().sum() > 0
    assert head.rollout(Latents(moving_blob()[:, :3]), 5).latents.shape == (4, 5, 16, 3)  # two blocks of 3, cut


def test_an_objective_refuses_a_trunk_that_does_not_fit():
    with pytest.raises(ValueError, match="causal='frame'.*TransformerTrunk has causal='none'"):
        ComposedHead(transformer_trunk("none"), next_frame())
    codes = LatentSpec(latent_dim=3, grid=(4, 4), codebook_size=8)
    prior = CodePrior(codes, ordering="token", patch_size=1, width=WIDTH, readout="linear", input_noise=0.0, name="t")
    with pytest.raises(ValueError, match="ordering='token' needs a trunk with causal='token'"):
        ComposedHead(mamba_trunk(), prior)
    assert ComposedHead(transformer_trunk("causal"), prior).needs_codes


@pytest.mark.parametrize("name,params", [
    ("transformer", dict(context_latents=3, d_model=24, num_layers=1, num_heads=2, objective="autoregressive")),
    ("transformer", dict(context_latents=3, d_model=24, num_layers=1, num_heads=2)),
    ("mamba", dict(d_model=16, num_layers=1, d_state=8, head_dim=8, backend="torch")),
    ("mamba", dict(d_model=16, num_layers=1, d_state=8, head_dim=8, backend="torch", objective="regression")),
    ("flow_dit", dict(context_latents=3, d_model=24, num_layers=1, num_heads=2, patch_size=2, target="residual")),
])
def test_a_checkpoint_written_before_the_split_loads(name, params):
    """Keys of the heads before they had a trunk and an objective (``blocks.0...``, ``standardizer.mean``)
    load into ``trunk.*`` / ``objective.*``, alone and inside a model (prefix ``head.``)."""
    spec = LatentSpec(latent_dim=4, grid=(4, 4), codebook_size=8)
    torch.manual_seed(0)
    trained = make_head(name, spec, 5, **params)
    with torch.no_grad():
        for tensor in trained.state_dict().values():
            tensor.copy_(torch.randn_like(tensor.float()).to(tensor.dtype) if tensor.is_floating_point() else 1)
    old_keys = {key.split(".", 1)[1]: value for key, value in trained.state_dict().items()}
    assert all(not key.startswith(("trunk.", "objective.")) for key in old_keys)
    for wrapped in (False, True):
        torch.manual_seed(1)
        fresh = make_head(name, spec, 5, **params)
        if wrapped:
            nn.ModuleDict({"head": fresh}).load_state_dict({f"head.{k}": v for k, v in old_keys.items()})
        else:
            fresh.load_state_dict(old_keys)  # strict: every key found, none left over
        for key, value in trained.state_dict().items():
            assert torch.equal(fresh.state_dict()[key], value), key
