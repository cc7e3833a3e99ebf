"""Building heads from their configs, and assertions shared by the tests of the code-predicting
heads (mamba, transformer)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from futurelat.config.dataset import MovingMNISTConfig
from futurelat.config.head import FlowDiTParams, MambaParams, TransformerParams
from futurelat.models.base import Latents, LatentSpec

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
#: The importable class and the ``head.params`` schema of each head config (``configs/head/<name>.yaml``).
HEAD_CLASSES = {"mamba": "futurelat.models.heads.mamba:MambaHead",
                "transformer": "futurelat.models.heads.transformer:TransformerHead",
                "flow_dit": "futurelat.models.heads.flow_dit:FlowDiTHead"}
HEAD_SCHEMAS = {"mamba": MambaParams, "transformer": TransformerParams, "flow_dit": FlowDiTParams}
#: A tiny discrete spec, and the ``head.params`` of tiny frame-orderable code priors on both trunks
#: (the tests of whole-frame decoding, scheduled sampling and mean-field rollouts build on them).
PRIOR_SPEC = LatentSpec(latent_dim=8, grid=(4, 4), codebook_size=16)
TINY_PRIORS = {
    "mamba": dict(d_model=32, num_layers=2, d_state=8, expand=2, head_dim=16, conv_kernel=4, spatial_kernel=3,
                  chunk_size=8, backend="torch", input_noise=0.0,
                  static_keep=1.0,  # configs/head/mamba.yaml's sampled static patches off: every code scored
                  sampling={"mean_field": False}),  # configs/head/mamba.yaml's mean-field rollout off: codes are drawn
    "transformer": dict(objective="autoregressive", d_model=32, num_layers=2, num_heads=2, position="rope",
                        context_latents=3),
}


def perturbed_prior(name: str, patch_size: int = 1, **overrides: Any):
    """A tiny frame-ordered code prior (:data:`TINY_PRIORS`, on :data:`PRIOR_SPEC`, clips of 6 frames) with
    ``overrides``, every weight moved by ``0.1 * N(0, 1)`` after a seeded build, so that it is neither the
    initial "copy the last frame" nor the transformer's zero output layer."""
    torch.manual_seed(0)
    head = make_head(name, PRIOR_SPEC, 6, ordering="frame", patch_size=patch_size, **{**TINY_PRIORS[name], **overrides})
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return head


def head_params(name: str, **overrides: Any) -> dict[str, Any]:
    """``head.params`` of ``configs/head/<name>.yaml`` (its schema's defaults, then what the YAML sets),
    with ``overrides`` (a ``sampling`` override replaces the whole mapping, as a test sets it)."""
    yaml = OmegaConf.load(CONFIG_DIR / "head" / f"{name}.yaml").get("params") or {}
    params = OmegaConf.to_container(OmegaConf.merge(OmegaConf.structured(HEAD_SCHEMAS[name]), yaml), resolve=True)
    params.update(overrides)
    return params


def make_head(name: str, spec: LatentSpec, num_frames: int, **overrides: Any):
    """The head of ``configs/head/<name>.yaml`` built for ``spec``: the config's params, then ``overrides``.

    ``context_latents: null`` becomes the default dataset's ``context_frames`` divided by the spec's
    temporal downsampling, as :func:`~futurelat.models.latent_video_model.build_model` does.
    """
    params = head_params(name, **overrides)
    if "context_latents" in params and params["context_latents"] is None:
        params["context_latents"] = MovingMNISTConfig().context_frames // spec.temporal_downsample
    module, attr = HEAD_CLASSES[name].split(":")
    return getattr(importlib.import_module(module), attr)(spec, num_frames, **params)


def assert_causal(head, codes: torch.Tensor, ordering: str, changed_frame: int = 3) -> None:
    """Changing every code of ``changed_frame`` must leave all earlier logits untouched and move later ones.

    ``head.logits(codes)`` is ``(B, T', N, K)``. Frame ordering: row ``r`` sees frames ``<= r``, so
    rows ``< changed_frame`` may not change. Token ordering: the inputs are shifted by one, so
    everything up to and including the first code of ``changed_frame`` may not change.
    """
    changed = codes.clone()
    changed[:, changed_frame] = (changed[:, changed_frame] + 1) % head.objective.num_codes
    with torch.no_grad():
        before, after = head.logits(codes), head.logits(changed)
    if ordering == "frame":
        same, moved = (before[:, :changed_frame], after[:, :changed_frame]), (before[:, changed_frame:], after[:, changed_frame:])
    else:
        flat_b, flat_a = before.flatten(1, 2), after.flatten(1, 2)
        cut = changed_frame * codes.shape[2] + 1
        same, moved = (flat_b[:, :cut], flat_a[:, :cut]), (flat_b[:, cut:], flat_a[:, cut:])
    torch.testing.assert_close(*same, atol=0, rtol=0)
    assert (moved[0] - moved[1]).abs().amax() > 1e-3  # later outputs do depend on the changed frame


def assert_steps_match_parallel(head, codes: torch.Tensor, ordering: str) -> torch.Tensor:
    """Stepping the head (prefill, then one ``step`` per frame / code) gives the teacher-forced logits.

    Also checks that a multi-frame prefill continues exactly like the steps. Returns the parallel
    logits ``(B, T', N, K)`` for further checks.
    """
    b, t, n = codes.shape
    with torch.no_grad():
        parallel = head.logits(codes)
        if ordering == "frame":  # row r predicts frame r + 1
            logits, state = head.prefill(codes[:, :1])
            steps = [logits]
            for r in range(1, t - 1):
                logits, state = head.step(codes[:, r], state)
                steps.append(logits)
            recurrent = torch.stack(steps, 1)  # (B, T-1, N, K)
        else:  # token ordering: from the start token alone, then one code per step
            flat = codes.flatten(1)
            logits, state = head.prefill(codes[:, :0])
            steps = [logits]
            for i in range(t * n - 1):
                logits, state = head.step(flat[:, i:i + 1], state)
                steps.append(logits)
            recurrent = torch.cat(steps, 1).view(b, t, n, -1)
        prefilled, _ = head.prefill(codes[:, :3])
    assert parallel.shape == recurrent.shape
    torch.testing.assert_close(recurrent, parallel, atol=1e-4, rtol=1e-4)
    expected = parallel[:, 2] if ordering == "frame" else parallel[:, 3, :1]
    torch.testing.assert_close(prefilled, expected, atol=1e-4, rtol=1e-4)
    return parallel


def assert_bar_rolled_out(future: torch.Tensor, truth: torch.Tensor) -> None:
    """Rolled-out codes ``(B, F, N)`` of a moving bar (code 1 on code 0) match the true ones ``(B, F, N)``."""
    accuracy = (future == truth).float().mean().item()
    bar_hits = ((future == 1) & (truth == 1)).sum() / (truth == 1).sum()
    assert accuracy > 0.98 and bar_hits > 0.9, (accuracy, bar_hits)  # the bar itself, not just the background


def assert_rejects_bad_codes(head, codes: torch.Tensor) -> None:
    """``head`` refuses codes of the wrong shape or range, and latents without codes, naming the problem.

    ``codes`` are valid ``(B, T, N)`` codes for ``head`` (``N = 16``, ``K = 16``).
    """
    def as_latents(c: torch.Tensor) -> Latents:
        return Latents(latents=torch.zeros(*c.shape, 0), codes=c)

    with pytest.raises(ValueError, match=r"\(B, T, N=16\)"):
        head(as_latents(codes[:, :, :8]))
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        head(as_latents(codes + 16))
    with pytest.raises(ValueError, match="codes is None"):
        head(Latents(latents=torch.zeros(*codes.shape, 8)))
