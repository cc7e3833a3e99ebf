"""Every registered backbone x head pair: composes from the real configs, builds, trains a step and
rolls out frames; a pair that cannot work is rejected at build time with a message that says why."""

from __future__ import annotations

import pytest
import torch

from futurelat.models.latent_video_model import build_model
from futurelat.registry import BACKBONES, HEADS

from composing import CONFIG_DIR, tiny_config

#: Each head config of configs/head/, with every objective it offers (as overrides).
HEAD_VARIANTS = {
    "mamba": [[], ["head.params.objective=regression"]],
    "flow_dit": [[]],
    "transformer": [[], ["head.params.spatial_kernel=3", "head.params.temporal_kernel=3"],
                    ["head.params.objective=autoregressive"],
                    ["head.params.objective=autoregressive", "head.params.ordering=token"]],
}
#: The config of each registered backbone used here (pretrained ones: their tiny random variant).
BACKBONE_CONFIGS = {"vqvae": "vqvae", "vjepa2": "vjepa2_tiny", "magvit2_fsq": "magvit2_fsq"}
PAIRS = [(backbone, head, extra) for backbone in BACKBONES.names()
         for head, variants in HEAD_VARIANTS.items() for extra in variants]


def test_every_backbone_is_in_the_matrix():
    assert sorted(BACKBONE_CONFIGS) == BACKBONES.names()


def test_every_head_config_is_in_the_matrix():
    configs = sorted(p.stem for p in (CONFIG_DIR / "head").glob("*.yaml"))
    assert configs == sorted(HEAD_VARIANTS) == HEADS.names()


@pytest.mark.parametrize(("backbone", "head", "extra"), PAIRS, ids=lambda v: "+".join(v) if isinstance(v, list) else v)
def test_pair_builds_trains_a_step_and_rolls_out(backbone, head, extra):
    cfg = tiny_config([f"backbone={BACKBONE_CONFIGS.get(backbone, backbone)}", f"head={head}", *extra])
    needs_codes = HEADS.get(head).config_needs_codes(dict(cfg.head.params))
    if needs_codes and not BACKBONES.get(backbone).discrete:
        with pytest.raises(ValueError, match="needs a discrete backbone"):
            build_model(cfg)
        return
    torch.manual_seed(0)
    model = build_model(cfg)
    size, channels = cfg.dataset.image_size, cfg.dataset.channels
    frames = torch.rand(2, cfg.dataset.context_frames + cfg.dataset.future_frames, channels, size, size)
    if model.backbone.trainable:  # stage 1: one step (a VQ codebook is initialised by its first batch)
        model.backbone.train()
        clips = model.backbone.sample_training_frames(frames, cfg.backbone.frames_per_clip or frames.shape[1])
        model.backbone(clips)["loss"].backward()
        assert_grad_layout(model.backbone)
    model.backbone.freeze()

    params = [p for p in model.head.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    out = model.head(**model.head_inputs({"frames": frames}))
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert_grad_layout(model.head)
    torch.optim.SGD(params, lr=0.1).step()
    assert any(not torch.equal(a, p) for a, p in zip(before, params)), "the head did not learn"

    context = frames[:, :cfg.dataset.context_frames]
    if not model.backbone.has_decoder:  # latent rollout only (evaluated in latent space)
        z = model.head.eval().rollout(model.encode(context), 2)
        assert z.latents.shape == (2, 2, model.spec.tokens_per_frame, model.spec.latent_dim)
        assert torch.isfinite(z.latents).all()
        with pytest.raises(ValueError, match="no pixel decoder"):
            model.rollout(context, 2)
        return
    num_future = min(3 * model.spec.temporal_downsample, cfg.dataset.future_frames)  # 3 latent frames at most
    future = model.rollout(context, num_future)
    assert future.shape == (2, num_future, channels, size, size)
    assert torch.isfinite(future).all() and 0 <= future.min() and future.max() <= 1


def assert_grad_layout(module: torch.nn.Module) -> None:
    """Every gradient has its parameter's strides: DDP's gradient layout contract (a mismatch makes each
    all-reduce copy the gradient, and every rank warns "Grad strides do not match bucket view strides")."""
    for name, p in module.named_parameters():
        if p.grad is not None:
            assert p.grad.stride() == p.stride(), f"{name}: grad strides {p.grad.stride()} != param {p.stride()}"
