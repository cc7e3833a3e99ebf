"""MAGVIT-v2 + FSQ backbone: causal encoding (the first frame alone), shapes, the FSQ code round trip,
decoding, a loss that goes down, and the tiny composed config trained with a code head and latent heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from einops import rearrange

from futurelat.cache import run_cache
from futurelat.datasets import build_dataset, moving_mnist
from futurelat.datasets.latent_cache import load_cache_info
from futurelat.models.backbones.magvit2 import MAGVIT2
from futurelat.models.base import Latents, LatentSpec
from futurelat.models.latent_video_model import build_backbone, build_model
from futurelat.training.checkpoint import save_checkpoint
from futurelat.training.distributed import DistInfo

from composing import TINY_BACKBONE, TINY_COMMON, compose_config, tiny_config

KEYS = {"loss", "recon_l1", "psnr", "codebook_usage", "perplexity"}  # the VQ-VAE's, less its commitment


def tiny_magvit(**kw) -> MAGVIT2:
    torch.manual_seed(0)
    return MAGVIT2(**{"in_channels": 1, "hidden_channels": 8, "channel_mult": [1, 1, 2], **kw})


def clip(b: int = 2, t: int = 17, size: int = 16, seed: int = 1) -> torch.Tensor:
    """A bright square moving right on black: (b, t, 1, size, size) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.zeros(b, t, 1, size, size)
    for i in range(b):
        y, x = torch.randint(0, size - 6, (2,), generator=g).tolist()
        for j in range(t):
            frames[i, j, 0, y:y + 5, (x + j) % (size - 5):(x + j) % (size - 5) + 5] = 1.0
    return frames


def pre_quantization(model: MAGVIT2, frames: torch.Tensor) -> torch.Tensor:
    """The encoder's continuous output (B, T', N, D), before FSQ."""
    return rearrange(model.encoder(rearrange(frames, "b t c h w -> b c t h w")), "b d t h w -> b t (h w) d")


def test_shapes_17_frames_to_5_latent_frames_and_8x_spatial():
    model = tiny_magvit()
    z = model.encode(clip(size=32))
    assert z.latents.shape == (2, 5, 16, 4) and z.codes.shape == (2, 5, 16) and z.codes.dtype == torch.int64
    spec = model.latent_spec((32, 32))
    assert spec == LatentSpec(latent_dim=4, grid=(4, 4), codebook_size=1000, temporal_downsample=4,
                              first_frame_alone=True)
    assert (spec.latent_frames(17), spec.tokens_per_frame, spec.latent_dim) == z.latents.shape[1:]
    assert model.decode(z).shape == (2, 17, 1, 32, 32)
    # the defaults: 4x time, 8x space, [8, 5, 5, 5] = 1,000 codes of 4 channels
    assert MAGVIT2().latent_spec((64, 64)) == LatentSpec(4, (8, 8), 1000, 4, True)
    assert MAGVIT2(levels=[8, 8, 8, 6, 5]).latent_spec((128, 128)) == LatentSpec(5, (16, 16), 15360, 4, True)


def test_encoding_is_causal():
    """Changing frame t changes no latent frame before t's (latent frame (t + 3) // 4), bit for bit."""
    model = tiny_magvit().eval()
    frames = clip(t=17)
    with torch.no_grad():
        base, codes = pre_quantization(model, frames), model.encode(frames).codes
        for t in (0, 1, 4, 5, 8, 16):
            changed = frames.clone()
            changed[:, t] = torch.rand_like(changed[:, t])
            after = pre_quantization(model, changed)
            j = (t + 3) // 4
            assert torch.equal(after[:, :j], base[:, :j]), t
            assert torch.equal(model.encode(changed).codes[:, :j], codes[:, :j]), t
            assert not torch.equal(after[:, j], base[:, j]), t


def test_the_first_frame_is_encoded_alone():
    """An image is a one-frame video: its one latent frame is the first latent frame of the clip it starts."""
    model = tiny_magvit().eval()
    frames = clip(t=9)
    with torch.no_grad():
        image, video = model.encode(frames[:, :1]), model.encode(frames)
        assert image.latents.shape == (2, 1, 4, 4)
        assert torch.equal(image.codes, video.codes[:, :1]) and torch.equal(image.latents, video.latents[:, :1])
        torch.testing.assert_close(pre_quantization(model, frames[:, :1]), pre_quantization(model, frames)[:, :1],
                                   rtol=0, atol=1e-6)
        assert model.decode(image).shape == (2, 1, 1, 16, 16)


def test_decoding_is_causal():
    model = tiny_magvit().eval()
    with torch.no_grad():
        z = model.encode(clip(t=13))
        base = model.decode(z)
        codes = z.codes.clone()
        codes[:, 2] = (codes[:, 2] + 1) % model.codebook_size  # latent frame 2 = frames 5..8
        after = model.decode(Latents(model.embed_codes(codes), codes))
    assert torch.equal(after[:, :5], base[:, :5]) and not torch.equal(after[:, 5:9], base[:, 5:9])


def test_frame_counts_not_one_plus_4k_are_refused_naming_the_shape():
    model = tiny_magvit()
    for t in (2, 16, 20):
        with pytest.raises(ValueError, match=rf"T must be 1 \+ k \* 4 \(1, 5, 9, 13, 17, ...\).*\(2, {t}, 1, 16, 16\)"):
            model.encode(torch.rand(2, t, 1, 16, 16))
    with pytest.raises(ValueError, match="20x20 is not divisible"):
        model.encode(torch.rand(1, 5, 1, 20, 20))
    with pytest.raises(ValueError, match="1-channel"):
        model.encode(torch.rand(1, 5, 3, 16, 16))
    with pytest.raises(ValueError, match="one entry per stage"):
        MAGVIT2(channel_mult=[1, 2], temporal_downsample=[True])
    with pytest.raises(ValueError, match=r"context_frames has 10 frames; backbone 'magvit2_fsq' encodes the first frame alone, "
                                       r"then groups of 4: 1 \+ k \* 4 frames \(1, 5, 9, 13, ...\)"):
        build_model(tiny_config(["backbone=magvit2_fsq", "dataset.context_frames=10", "dataset.future_frames=8"]))
    with pytest.raises(ValueError, match=r"future_frames=10 is not a multiple of backbone 'magvit2_fsq'"):
        build_model(tiny_config(["backbone=magvit2_fsq", "dataset.future_frames=10"]))


def test_fsq_codes_round_trip():
    """codes → latents → codes is the identity on all K codes, and encode's latents are its codes' vectors."""
    model = tiny_magvit(levels=[8, 5, 5, 5])
    every = torch.arange(model.codebook_size)
    assert torch.equal(model.snap(model.embed_codes(every)), every)
    assert model.codebook.unique(dim=0).shape == (1000, 4)
    z = model.encode(clip())
    assert 0 <= z.codes.min() and z.codes.max() < 1000
    assert torch.equal(model.embed_codes(z.codes), z.latents) and torch.equal(model.snap(z.latents), z.codes)
    noisy = z.latents + 0.05 * torch.randn_like(z.latents)  # a regression head's prediction snaps back
    assert torch.equal(model.snap(noisy), z.codes)
    assert torch.equal(model.decode(Latents(noisy)), model.decode(z))
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 1000\)"):
        model.embed_codes(torch.tensor([1000]))


def test_decode_latents_is_differentiable_and_decodes_the_snapped_vectors():
    model = tiny_magvit()
    z = model.encode(clip(t=5))
    latents = (z.latents.detach() + 0.05 * torch.randn_like(z.latents)).requires_grad_()
    frames = model.decode_latents(latents)
    assert torch.allclose(frames, model.decode(z))
    frames.sum().backward()
    assert latents.grad is not None and latents.grad.abs().sum() > 0


def test_forward_logs_the_vq_metrics_and_its_loss_goes_down():
    model = tiny_magvit()
    frames = clip(t=5)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        out = model(frames)
        assert set(out) == KEYS and all(v.shape == () for v in out.values())
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.7 * losses[0], losses
    assert 0 < out["codebook_usage"] <= 1 and 1 <= out["perplexity"] <= 1000
    recon = model.autoencode(frames).recon  # what a GAN stage reads (and model.last_layer)
    assert recon.shape == frames.shape and recon.requires_grad and model.last_layer.ndim == 5


def test_training_frames_are_consecutive_windows_of_1_plus_4k():
    model = tiny_magvit()
    frames = torch.arange(20.0).view(1, 20, 1, 1, 1).expand(3, 20, 1, 16, 16)
    for asked, got in ((17, 17), (20, 17), (8, 5), (1, 1)):
        sample = model.sample_training_frames(frames, asked)[:, :, 0, 0, 0]
        assert sample.shape == (3, got)
        assert torch.equal(sample - sample[:, :1], torch.arange(float(got)).expand(3, -1))


@pytest.mark.parametrize("head", [["head=transformer", "head.params.objective=autoregressive"],  # codes
                                  ["head=transformer"], ["head=flow_dit"]],  # latents
                         ids=["transformer_codes", "transformer_latents", "flow_dit"])
def test_composed_config_trains_a_step_of_each_stage_and_rolls_out(head):
    cfg = tiny_config(["backbone=magvit2_fsq", *head, "dataset.image_size=32"])
    assert (cfg.dataset.context_frames, cfg.dataset.future_frames, cfg.backbone.frames_per_clip) == (5, 8, 17)
    torch.manual_seed(0)
    model = build_model(cfg)
    assert model.spec.latent_frames(13) == 4 and model.head.num_frames == 4
    frames = torch.rand(2, 13, 3, 32, 32)
    model.backbone.train()
    model.backbone(model.backbone.sample_training_frames(frames, cfg.backbone.frames_per_clip))["loss"].backward()
    model.backbone.freeze()
    params = [p for p in model.head.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    out = model.head(**model.head_inputs({"frames": frames}))
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    torch.optim.SGD(params, lr=0.1).step()
    assert any(not torch.equal(a, p) for a, p in zip(before, params))
    future = model.rollout(frames[:, :5], 8)
    assert future.shape == (2, 8, 3, 32, 32) and 0 <= future.min() and future.max() <= 1
    recon = model.reconstruct(frames)
    assert recon.shape == frames.shape
    again, codes = model.reconstruct(frames, return_codes=True)  # one encoding for the frames and their codes
    assert torch.equal(again, recon) and torch.equal(codes, model.encode(frames).codes)


def test_cache_command_writes_its_latents_and_a_head_trains_from_them(tmp_path, monkeypatch):
    """``python -m futurelat.cache`` on 13-frame Moving MNIST clips: 4 latent frames of 4x4 codes per clip."""
    digits = np.random.default_rng(0).integers(0, 256, (moving_mnist.MNIST_POOL_SIZE, 28, 28), dtype=np.uint8)
    monkeypatch.setattr(moving_mnist, "_mnist_digits", lambda: digits)  # any digits will do (parsing takes ~7 s)
    torch.manual_seed(0)
    tokenizer = save_checkpoint({"model": build_backbone(tiny_config(["backbone=magvit2_fsq"])).state_dict()},
                                tmp_path / "tokenizer_final.pt")
    root = tmp_path / "cache"
    cfg = compose_config([o for o in TINY_COMMON + TINY_BACKBONE["magvit2_fsq"] if not o.startswith("dataset.")] + [
        "backbone=magvit2_fsq", "dataset=kinetics_400_cached", "dataset@dataset.source=moving_mnist",
        f"dataset.dir={root}", "dataset.source.test_sequences=3", "dataset.source.image_size=32",
        "dataset.source.context_frames=5", "dataset.source.future_frames=8", f"backbone.checkpoint={tokenizer}",
        "cache.splits=[test]", "cache.num_workers=0", "cache.batch_size=2", "cache.dtype=float32"])
    single = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), is_main=True)
    assert run_cache(cfg, single)["test"].written == 3
    info = load_cache_info(root)
    assert info["latent_shape"] == [4, 16, 4] and info["frames_per_clip"] == 13
    assert info["spec"]["first_frame_alone"] is True and info["spec"]["codebook_size"] == 1000
    cached = build_dataset(cfg.dataset, "test")
    model = build_model(cfg)
    model.backbone.load_state_dict(torch.load(tokenizer, weights_only=True)["model"])
    z = model.encode(build_dataset(cfg.dataset.source, "test")[1]["frames"][None])
    assert torch.equal(cached[1]["codes"], z.codes[0]) and torch.equal(cached[1]["latents"], z.latents[0])
    batch = {k: torch.stack([cached[i][k] for i in range(2)]) for k in ("latents", "codes")}
    loss = model.head(**model.head_inputs(batch))["loss"]
    assert torch.isfinite(loss)
