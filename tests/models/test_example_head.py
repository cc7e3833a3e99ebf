"""The one-file example head (examples/heads/last_frame_mlp.py): it builds, trains and rolls out."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from futurelat.models.base import LatentSpec, Latents

PATH = Path(__file__).resolve().parents[2] / "examples" / "heads" / "last_frame_mlp.py"
SPEC = LatentSpec(latent_dim=3, grid=(4, 4))


def example_module():
    spec = importlib.util.spec_from_file_location("last_frame_mlp", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_head_trains_and_rolls_out():
    head_cls = example_module().LastFrameMLPHead
    torch.manual_seed(0)
    head = head_cls(SPEC, 5, d_model=16, num_layers=2, mlp_ratio=2.0, patch_size=2, loss="mse")
    latents = torch.randn(2, 5, 16, 3) * 4 + 2
    out = head(Latents(latents))
    assert set(out) == {"loss", "l1", "mse", "cosine"} and out["loss"].ndim == 0
    out["loss"].backward()
    assert all(p.grad is not None for p in head.parameters())
    assert bool(head.objective.standardizer.fitted)  # the first training batch set the statistics
    future = head.rollout(Latents(latents[:, :3]), 4)
    assert future.latents.shape == (2, 4, 16, 3) and future.codes is None and head.training
    assert not head.needs_codes and not head_cls.config_needs_codes({})
    # Each prediction depends on the frame before it only: the same last frame gives the same future.
    other = latents[:, :3].clone()
    other[:, :2] = torch.randn(2, 2, 16, 3)
    torch.testing.assert_close(head.rollout(Latents(other), 4).latents, future.latents)


def test_example_head_names_bad_settings():
    head_cls = example_module().LastFrameMLPHead
    with pytest.raises(ValueError, match=r"head\.params\.patch_size"):
        head_cls(SPEC, 5, d_model=16, num_layers=2, mlp_ratio=2.0, patch_size=3, loss="mse")
    with pytest.raises(ValueError, match=r"head\.params\.loss"):
        head_cls(SPEC, 5, d_model=16, num_layers=2, mlp_ratio=2.0, patch_size=2, loss="huber")
