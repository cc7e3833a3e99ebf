"""The GAN pieces on their own: losses on known logits, LeCam, the adaptive weight, the discriminators'
shapes, the perceptual loss on a random-weight transformers model, the config, the VQ-VAE's reconstruction."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from futurelat.config.gan import GANConfig, PerceptualConfig
from futurelat.models.gan.build import Critic, build_gan
from futurelat.models.gan.discriminator import BlurPool3d, build_discriminator
from futurelat.models.gan.losses import (LeCam, adaptive_weight, discriminator_loss, generator_loss,
                                         grad_norm_at)
from futurelat.models.gan.perceptual import PerceptualLoss, build_perceptual, load_image_model

REAL = torch.tensor([2.0, 0.0, -1.0, 0.5])
FAKE = torch.tensor([-2.0, 0.5, 1.0, -0.5])
#: A tiny random ConvNeXt: 4 stages of 8..32 channels.
TINY_CONVNEXT = dict(pretrained=None, model_type="convnext",
                     config={"hidden_sizes": [8, 16, 16, 32], "depths": [1, 1, 1, 1]})


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# ---------------------------------------------------------------------------------------- losses

def test_hinge_losses_on_known_logits():
    # D: 0.5 * (mean(relu(1 - real)) + mean(relu(1 + fake)))
    real_term = (0 + 1 + 2 + 0.5) / 4
    fake_term = (0 + 1.5 + 2 + 0.5) / 4
    assert discriminator_loss("hinge", REAL, FAKE).item() == pytest.approx(0.5 * (real_term + fake_term))
    assert generator_loss("hinge", FAKE).item() == pytest.approx(-FAKE.mean().item())
    # a perfect discriminator (real >= 1, fake <= -1) has zero hinge loss
    assert discriminator_loss("hinge", torch.full((3,), 1.5), torch.full((3,), -1.0)).item() == 0.0


def test_non_saturating_losses_on_known_logits():
    d = 0.5 * (sum(_softplus(-r) for r in REAL.tolist()) / 4 + sum(_softplus(f) for f in FAKE.tolist()) / 4)
    assert discriminator_loss("non_saturating", REAL, FAKE).item() == pytest.approx(d, rel=1e-6)
    g = sum(_softplus(-f) for f in FAKE.tolist()) / 4
    assert generator_loss("non_saturating", FAKE).item() == pytest.approx(g, rel=1e-6)
    # at logit 0 the discriminator is undecided: log 2 on each side
    assert discriminator_loss("non_saturating", torch.zeros(2), torch.zeros(2)).item() == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="hinge | non_saturating"):
        generator_loss("wasserstein", FAKE)
    with pytest.raises(ValueError, match="hinge | non_saturating"):
        discriminator_loss("lsgan", REAL, FAKE)


def test_lecam_penalty_and_ema():
    lecam = LeCam(decay=0.9)
    assert lecam.ema_real.item() == 0.0 and lecam.ema_fake.item() == 0.0
    # EMAs at 0: mean(relu(real)²) + mean(relu(-fake)²)
    expected = (4 + 0 + 0 + 0.25) / 4 + (4 + 0 + 0 + 0.25) / 4
    assert lecam.penalty(REAL, FAKE).item() == pytest.approx(expected)
    lecam.update(2.0, -1.0)
    assert lecam.ema_real.item() == pytest.approx(0.2) and lecam.ema_fake.item() == pytest.approx(-0.1)
    # relu(real + 0.1)², relu(0.2 - fake)²
    expected = sum(max(r + 0.1, 0) ** 2 for r in REAL.tolist()) / 4 + sum(max(0.2 - f, 0) ** 2 for f in FAKE.tolist()) / 4
    assert lecam.penalty(REAL, FAKE).item() == pytest.approx(expected, rel=1e-6)
    assert set(Critic(nn.Identity()).state_dict()) == {"lecam.ema_real", "lecam.ema_fake"}  # checkpointed
    with pytest.raises(ValueError, match="decay"):
        LeCam(decay=1.0)


def test_adaptive_weight_is_vqgans_gradient_norm_ratio():
    torch.manual_seed(0)
    last = nn.Linear(3, 2)
    x = torch.randn(5, 3)
    out = last(x)
    rec = out.square().mean()
    adv = -(3 * out).mean()
    g_rec = torch.autograd.grad(rec, last.weight, retain_graph=True)[0]
    g_adv = torch.autograd.grad(adv, last.weight, retain_graph=True)[0]
    rec_norm, adv_norm = grad_norm_at(rec, last.weight), grad_norm_at(adv, last.weight)
    assert last.weight.grad is None  # nothing accumulated
    assert rec_norm.item() == pytest.approx(g_rec.norm().item()) and adv_norm.item() == pytest.approx(g_adv.norm().item())
    weight = adaptive_weight(rec_norm, adv_norm)
    assert weight.item() == pytest.approx(g_rec.norm().item() / (g_adv.norm().item() + 1e-4), rel=1e-6)
    assert not weight.requires_grad
    assert adaptive_weight(torch.tensor(5.0), torch.tensor(0.0), max_weight=10.0).item() == 10.0  # clamped
    (rec + adv).backward()  # the graph is still there for the real backward pass


# -------------------------------------------------------------------------------- discriminators

@pytest.mark.parametrize("t", [1, 2, 5])
def test_patch2d_scores_every_frame(t):
    torch.manual_seed(0)
    disc = build_discriminator("patch2d", in_channels=3, channels=8, num_layers=3)
    frames = torch.rand(2, t, 3, 32, 32, requires_grad=True)
    logits = disc(frames)
    assert logits.shape == (2, t, 4, 4)
    logits.mean().backward()
    assert frames.grad.abs().sum() > 0
    one = disc(frames[:, :1].detach())  # per frame: the first frame's logits do not depend on the others
    torch.testing.assert_close(one[:, 0], logits[:, 0].detach())


@pytest.mark.parametrize("t, t_out", [(1, 1), (2, 1), (5, 1), (16, 2)])  # 16 -> 8 -> 4 -> 2
def test_style3d_downsamples_space_and_time(t, t_out):
    torch.manual_seed(0)
    disc = build_discriminator("style3d", in_channels=1, channels=4, num_layers=3)
    frames = torch.rand(2, t, 1, 16, 16, requires_grad=True)
    logits = disc(frames)
    assert logits.shape == (2, t_out, 2, 2)
    logits.mean().backward()
    assert all(p.grad is not None for p in disc.parameters())
    with pytest.raises(ValueError, match="unknown discriminator"):
        build_discriminator("stylegan", 1)
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        disc(torch.rand(2, 1, 16, 16))


def test_blur_pool_keeps_a_constant_and_halves_sizes():
    x = torch.full((1, 2, 5, 7, 9), 0.3)
    y = BlurPool3d()(x)
    assert y.shape == (1, 2, 3, 4, 5)
    torch.testing.assert_close(y, torch.full_like(y, 0.3))
    assert BlurPool3d()(torch.rand(1, 2, 1, 8, 8)).shape == (1, 2, 1, 4, 4)  # one frame: space only
    assert BlurPool3d().state_dict() == {}  # fixed taps: not checkpointed


# ------------------------------------------------------------------------------------ perceptual

@pytest.fixture(scope="module")
def perceptual():
    return build_perceptual(PerceptualConfig(**TINY_CONVNEXT))


def test_perceptual_is_zero_for_identical_frames_and_positive_otherwise(perceptual):
    torch.manual_seed(0)
    a = torch.rand(2, 2, 1, 32, 32)
    assert perceptual(a, a.clone()).item() == pytest.approx(0.0, abs=1e-6)
    b = (a + 0.2 * torch.randn_like(a)).clamp(0, 1)
    assert perceptual(b, a).item() > 1e-3
    assert perceptual(b, a).item() <= 4.0
    assert perceptual(torch.rand(1, 1, 3, 32, 32), torch.rand(1, 1, 3, 32, 32)).item() > 0  # RGB too
    with pytest.raises(ValueError, match="differ"):
        perceptual(a, a[:, :1])


def test_perceptual_network_is_frozen(perceptual):
    assert not any(p.requires_grad for p in perceptual.parameters())
    perceptual.train()
    assert not perceptual.network.training  # train() keeps the frozen network in eval mode
    torch.manual_seed(1)
    pred = torch.rand(1, 2, 1, 32, 32, requires_grad=True)
    perceptual(pred, torch.rand(1, 2, 1, 32, 32)).backward()
    assert pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in perceptual.parameters())


def test_perceptual_layers_resize_and_token_models():
    torch.manual_seed(0)
    a, b = torch.rand(1, 1, 1, 20, 20), torch.rand(1, 1, 1, 20, 20)
    cfg = PerceptualConfig(**{**TINY_CONVNEXT, "layers": [1, 2], "resize": 32})
    assert build_perceptual(cfg)(a, b).item() > 0
    vit = PerceptualConfig(pretrained=None, model_type="dinov2", resize=28,
                           config={"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                                   "intermediate_size": 32, "patch_size": 14, "image_size": 28})
    loss = build_perceptual(vit)
    assert loss(a, b).item() > 0 and loss(a, a).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="model_type='no_such_model'"):
        build_perceptual(PerceptualConfig(pretrained=None, model_type="no_such_model"))


def test_perceptual_weights_from_a_directory_and_the_offline_error(tmp_path, monkeypatch, perceptual):
    perceptual.network.save_pretrained(tmp_path / "net")
    loaded = load_image_model(str(tmp_path / "net"))
    for (k, v), w in zip(perceptual.network.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(v, w), k
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(FileNotFoundError) as info:
        build_perceptual(PerceptualConfig(pretrained="facebook/convnext-tiny-224", cache_dir=str(tmp_path / "hf")))
    message = str(info.value)
    for part in ("'facebook/convnext-tiny-224' (backbone.gan.perceptual.pretrained) are not in the local Hugging "
                 "Face cache", "offline mode is on", "hf download facebook/convnext-tiny-224",
                 "backbone.gan.perceptual_weight=0"):
        assert part in message
    with pytest.raises(FileNotFoundError, match="looks like a directory but does not exist"):
        load_image_model(str(tmp_path / "missing" / "dir"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no transformers model in that directory"):
        load_image_model(str(tmp_path / "empty"))


# ------------------------------------------------------------------------------ config and build

def test_gan_config_defaults_and_checks():
    cfg = GANConfig.from_cfg({})
    assert not cfg.enabled and not cfg.active and cfg.generator_weight == 0.1 and cfg.lecam_weight == 0.05
    assert not cfg.adaptive_weight and cfg.perceptual_weight == 0.0
    assert build_gan({}, in_channels=3) is None and build_gan(None, in_channels=3) is None
    for bad, match in [({"d_loss": "lsgan"}, "backbone.gan.d_loss must be one of hinge | non_saturating"),
                       ({"discriminator": "vgg"}, "backbone.gan.discriminator"),
                       ({"start_step": -1}, "backbone.gan.start_step must be >= 0"),
                       ({"lecam_decay": 1.0}, "backbone.gan.lecam_decay"),
                       ({"optimizer": {"lr": 0.0}}, "backbone.gan.optimizer"),
                       ({"no_such_key": 1}, "backbone.gan.no_such_key")]:
        with pytest.raises(ValueError, match=match):
            GANConfig.from_cfg(bad)


def test_build_gan_parts():
    torch.manual_seed(0)
    gan = build_gan({"enabled": True, "discriminator": "style3d", "channels": 4, "num_layers": 2}, in_channels=1)
    assert isinstance(gan.critic, Critic) and gan.perceptual is None
    assert gan.critic(torch.rand(1, 2, 1, 16, 16)).shape == (1, 1, 4, 4)
    only_perceptual = build_gan({"perceptual_weight": 1.0, "perceptual": TINY_CONVNEXT}, in_channels=1)
    assert only_perceptual.critic is None and isinstance(only_perceptual.perceptual, PerceptualLoss)


def test_vqvae_returns_its_reconstruction_on_request():
    from futurelat.models.backbones.vqvae import VQVAE

    torch.manual_seed(0)
    frames = torch.rand(2, 3, 1, 16, 16)
    model = VQVAE(in_channels=1, hidden_channels=8, latent_dim=8, codebook_size=16, kmeans_init=False)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    plain = model(frames)
    model.load_state_dict(state)  # the EMA codebook moved: start the second pass from the same weights
    with_recon = model(frames, return_reconstruction=True)
    assert "reconstruction" not in plain
    assert set(with_recon) == set(plain) | {"reconstruction"}
    recon = with_recon["reconstruction"]
    assert recon.shape == frames.shape and recon.requires_grad
    assert torch.equal(with_recon["loss"], plain["loss"])
    assert with_recon["recon_l1"].item() == pytest.approx((recon - frames).abs().mean().item(), rel=1e-6)
    assert model.last_decoder_layer() is model.decoder.net[-1].weight
