"""The decoded pixel loss of the regression heads (futurelat/models/heads/pixel_loss.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from composing import tiny_config
from futurelat.evaluation.metrics import frame_ssim
from futurelat.models.base import Latents
from futurelat.models.latent_video_model import build_model

from head_checks import make_head


def _vqvae():
    torch.manual_seed(0)
    model = build_model(tiny_config(["+experiment=mmnist_vqvae_transformer"]))
    with torch.no_grad():  # a codebook with distinct vectors (the tiny model's EMA buffer starts near zero)
        model.backbone.codebook.copy_(torch.randn_like(model.backbone.codebook))
    return model.backbone.freeze()


def test_vqvae_decode_latents_is_decode_forward_and_straight_through_backward():
    backbone = _vqvae()
    grid = backbone.latent_spec((64, 64))
    latents = torch.randn(2, 3, grid.tokens_per_frame, grid.latent_dim, requires_grad=True)
    frames = backbone.decode_latents(latents)
    assert frames.shape == (2, 3, 3, 64, 64)
    torch.testing.assert_close(frames, backbone.decode(Latents(latents.detach(), None)))
    weights = torch.randn_like(frames)
    (frames * weights).sum().backward()
    # Straight-through: the gradient is the decoder's gradient at the snapped vectors.
    snapped = F.embedding(backbone.nearest_codes(latents.detach()), backbone.codebook).requires_grad_(True)
    (backbone.decode_latents(snapped) * weights).sum().backward()
    assert latents.grad.abs().sum() > 0
    torch.testing.assert_close(latents.grad, snapped.grad)


def test_the_straight_through_gradient_moves_latents_onto_the_target_codes():
    """Gradient descent on the pixel loss alone, from latents half way to other codes, lowers it."""
    backbone = _vqvae()
    k, n, d = backbone.codebook_size, backbone.latent_spec((64, 64)).tokens_per_frame, backbone.latent_dim
    target = F.embedding(torch.randint(0, k, (1, 1, n), generator=torch.Generator().manual_seed(1)), backbone.codebook)
    wrong = F.embedding(torch.randint(0, k, (1, 1, n), generator=torch.Generator().manual_seed(2)), backbone.codebook)
    latents = (0.45 * target + 0.55 * wrong).requires_grad_(True)
    with torch.no_grad():
        truth = backbone.decode_latents(target)
    losses = []
    opt = torch.optim.Adam([latents], lr=0.05)
    for _ in range(60):
        loss = F.mse_loss(backbone.decode_latents(latents), truth)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def _model_and_clip(overrides):
    """A tiny model of ``overrides`` with a frozen backbone of distinct codebook vectors, and a random clip
    of 20 frames of its codes (``Latents`` with codes)."""
    torch.manual_seed(0)
    model = build_model(tiny_config(overrides))
    with torch.no_grad():
        model.backbone.codebook.copy_(torch.randn_like(model.backbone.codebook))
    model.backbone.freeze()
    codes = torch.randint(0, model.spec.codebook_size, (2, 20, model.spec.tokens_per_frame))
    return model, Latents(F.embedding(codes, model.backbone.codebook), codes)


@pytest.mark.parametrize("experiment", ["mmnist_vqvae_transformer", "mmnist_vqvae_mamba_regression"])
def test_a_preset_with_the_pixel_loss_adds_it_and_trains_through_the_frozen_decoder(experiment):
    model, z = _model_and_clip([f"+experiment={experiment}", "head.params.pixel_loss_weight=3",
                                "head.params.pixel_loss_frames=1"])
    head = model.head
    out = head(z)
    latent_loss = out[head.objective.loss_name]
    torch.testing.assert_close(out["loss"], latent_loss + 3 * out["pixel_mse"])
    assert out["pixel_mse"] > 0
    out["loss"].backward()
    assert all(p.grad is None for p in model.backbone.parameters())  # frozen: the decoder only passes gradients
    # The pixel term alone reaches the head's weights.
    head.zero_grad()
    pred = torch.randn(2, 1, model.spec.tokens_per_frame, model.spec.latent_dim, requires_grad=True)
    head.pixel_loss(pred, z.latents[:, :1]).backward()
    assert pred.grad.abs().sum() > 0


@pytest.mark.parametrize("key,value", [("pixel_loss_weight", -1.0), ("pixel_loss_frames", 0),
                                       ("pixel_ssim_weight", -0.5)])
def test_bad_pixel_loss_settings_name_the_key(key, value):
    with pytest.raises(ValueError, match=rf"head\.params\.{key}"):
        build_model(tiny_config(["+experiment=mmnist_vqvae_transformer", f"head.params.{key}={value}"]))


def test_the_pixel_loss_is_refused_for_codes_and_for_backbones_without_a_decoder():
    with pytest.raises(ValueError, match=r"pixel_loss_weight is for the regression objective"):
        build_model(tiny_config(["+experiment=mmnist_vqvae_transformer_ar", "head.params.pixel_loss_weight=1"]))
    with pytest.raises(ValueError, match=r"pixel_loss_weight=1.0 .* backbone 'vjepa2' has no pixel decoder"):
        build_model(tiny_config(["backbone=vjepa2_tiny", "head=transformer", "head.params.pixel_loss_weight=1"]))
    with pytest.raises(ValueError, match=r"pixel_ssim_weight=2.0 .* backbone 'vjepa2' has no pixel decoder"):
        build_model(tiny_config(["backbone=vjepa2_tiny", "head=transformer", "head.params.pixel_ssim_weight=2"]))
    with pytest.raises(ValueError, match=r"is for the regression objective"):
        build_model(tiny_config(["+experiment=mmnist_vqvae_transformer_ar", "head.params.pixel_ssim_weight=1"]))


def test_the_ssim_term_is_one_minus_the_evaluation_ssim_of_the_decoded_frames():
    model, z = _model_and_clip(["+experiment=mmnist_vqvae_transformer", "head.params.pixel_loss_weight=3",
                                "head.params.pixel_ssim_weight=2", "head.params.pixel_loss_frames=20"])
    head = model.head
    out = head(z)
    # pixel_loss_frames covers every future frame, so the decoded frames are known: the whole future.
    with torch.no_grad():
        pred = head.objective.unstandardize(head.objective.predict(head.trunk, head.objective.standardize(
            z.latents[:, :head.objective.context_latents])))
        truth = model.backbone.decode_latents(z.latents[:, head.objective.context_latents:]).clamp(0, 1)
        frames = model.backbone.decode_latents(pred)
    ssim = frame_ssim(frames, truth).mean()
    torch.testing.assert_close(out["pixel_ssim"], ssim, rtol=1e-4, atol=1e-5)
    assert 0 < out["pixel_ssim"] < 1
    torch.testing.assert_close(out["loss"], out[head.objective.loss_name] + 3 * out["pixel_mse"] + 2 * (1 - ssim),
                               rtol=1e-4, atol=1e-5)


def test_the_ssim_term_pays_for_grey_haze_that_mse_barely_sees():
    """On a black frame with one bright square, haze of 0.04 costs little MSE and most of the SSIM."""
    truth = torch.zeros(1, 1, 1, 32, 32)
    truth[..., 10:16, 10:16] = 1.0
    haze = truth.clone().clamp_min(0.04)
    assert F.mse_loss(haze, truth) < 2e-3
    assert frame_ssim(haze, truth).mean() < 0.2


def test_a_head_built_without_the_builder_says_the_decoder_is_missing():
    model = build_model(tiny_config(["+experiment=mmnist_vqvae_transformer"]))
    head = make_head("transformer", model.spec, 20, pixel_loss_weight=1.0, d_model=32, num_layers=1)
    latents = torch.randn(1, 20, model.spec.tokens_per_frame, model.spec.latent_dim)
    with pytest.raises(RuntimeError, match="no decoder is attached"):
        head(Latents(latents, None))
