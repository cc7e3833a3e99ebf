"""The frozen V-JEPA 2 backbone on tiny random-weight models (no download: the Hub is mocked; a few seconds on one CPU thread)."""

from __future__ import annotations

import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from composing import compose_config
from futurelat.models.backbones.vjepa2 import (DEFAULT_CHECKPOINT, IMAGENET_MEAN, IMAGENET_STD, VJEPA2Backbone,
                                                preprocess)
from futurelat.models.base import Latents, LatentSpec
from futurelat.models.latent_video_model import build_backbone, build_model
from futurelat.registry import BACKBONES

#: 32×32 crops, 8×8 patches → a 4×4 grid (N = 16), tubelets of 2 frames, D = 32.
TINY = dict(patch_size=8, tubelet_size=2, frames_per_clip=8, hidden_size=32, num_hidden_layers=2,
            num_attention_heads=2, mlp_ratio=2.0, pred_hidden_size=16, pred_num_hidden_layers=1,
            pred_num_attention_heads=2, pred_num_mask_tokens=1, num_pooler_layers=1,
            pred_zero_init_mask_tokens=False)  # random mask tokens: predictions depend on target positions
CROP, N, D = 32, 16, 32


def tiny(**overrides) -> VJEPA2Backbone:
    """A random tiny backbone; ``overrides`` go to the constructor, ``config`` keys merge into TINY."""
    config = {**TINY, **overrides.pop("config", {})}
    return VJEPA2Backbone(pretrained=None, config=config, crop_size=CROP, **overrides)


def clip(b: int = 2, t: int = 4, c: int = 3, size: int = CROP, seed: int = 1) -> torch.Tensor:
    return torch.rand(b, t, c, size, size, generator=torch.Generator().manual_seed(seed))


def normalize(frames: torch.Tensor) -> torch.Tensor:
    """The ImageNet normalisation written out, for crop-sized RGB frames."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1)
    return (frames - mean) / std


# ------------------------------------------------------------------------------ contract


def test_registered_with_frozen_continuous_flags():
    cls = BACKBONES.get("vjepa2")
    assert cls is VJEPA2Backbone
    assert (cls.has_decoder, cls.trainable, cls.discrete) == (False, False, False)


def test_encode_shape_and_latent_spec():
    backbone = tiny()
    z = backbone.encode(clip(b=2, t=4))
    assert isinstance(z, Latents) and z.codes is None
    assert z.latents.shape == (2, 2, N, D) and z.latents.dtype == torch.float32
    assert torch.isfinite(z.latents).all()
    spec = backbone.latent_spec((64, 48))  # any frame size: frames are resized to the crop
    assert spec == LatentSpec(latent_dim=D, grid=(4, 4), codebook_size=None, temporal_downsample=2)
    with pytest.raises(ValueError, match="frame_size"):
        backbone.latent_spec((0, 64))


def test_bfloat16_weights_return_float32_latents():
    z = tiny(dtype="bfloat16").encode(clip(b=1, t=2))
    assert z.latents.dtype == torch.float32 and z.latents.shape == (1, 1, N, D)


def test_latents_are_the_models_last_hidden_state_reshaped():
    backbone = tiny()
    frames = clip(b=2, t=4)
    expected = backbone.model(normalize(frames), skip_predictor=True).last_hidden_state  # (B, T'·N, D)
    assert torch.allclose(backbone.encode(frames).latents.reshape(2, 2 * N, D), expected, atol=1e-5)


def test_layout_is_time_major_as_the_models_rope_positions():
    """Token ``t'·N + i·g + j`` ↔ (latent frame t', row i, column j), read off the model's own RoPE ids."""
    attention = tiny().model.encoder.layer[0].attention
    frame, row, col = attention.get_position_ids(torch.zeros(1, 3 * N, D))
    grid = torch.arange(4)
    assert torch.equal(frame.view(3, N), torch.arange(3)[:, None].expand(3, N))
    assert torch.equal(row.view(3, 4, 4), grid[None, :, None].expand(3, 4, 4))
    assert torch.equal(col.view(3, 4, 4), grid[None, None, :].expand(3, 4, 4))


@pytest.mark.parametrize("tubelet, row, col", [(1, 2, 1), (0, 0, 3)])
def test_a_pixel_change_moves_only_its_own_token(tubelet, row, col):
    """With no attention layer tokens are per tubelet/patch, so a local change locates the reshape."""
    backbone = tiny(config={"num_hidden_layers": 0})
    frames = clip(b=1, t=4)
    changed = frames.clone()
    changed[:, 2 * tubelet, :, 8 * row:8 * row + 8, 8 * col:8 * col + 8] = 0.0
    moved = (backbone.encode(changed).latents - backbone.encode(frames).latents).abs().amax(-1)[0]  # (T', N)
    expected = torch.zeros(2, N, dtype=torch.bool)
    expected[tubelet, 4 * row + col] = True
    assert torch.equal(moved > 1e-6, expected)


# ------------------------------------------------------------------------------ preprocessing


def test_preprocess_normalizes_with_imagenet_statistics():
    frames = torch.full((1, 2, 3, CROP, CROP), 0.5)
    x = preprocess(frames, CROP)
    for c in range(3):
        assert torch.allclose(x[:, :, c], torch.tensor((0.5 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]))


def test_preprocess_repeats_gray_and_center_crops_the_longer_side():
    gray = clip(b=1, t=2, c=1)
    assert torch.equal(preprocess(gray, CROP), preprocess(gray.expand(-1, -1, 3, -1, -1), CROP))
    wide = torch.rand(1, 2, 3, CROP, 2 * CROP)  # shorter side already the crop: only the crop acts
    assert torch.allclose(preprocess(wide, CROP), normalize(wide[..., CROP // 2:CROP // 2 + CROP]), atol=1e-5)
    big = torch.rand(1, 2, 3, 2 * CROP, 3 * CROP)
    assert preprocess(big, CROP).shape == (1, 2, 3, CROP, CROP)
    assert tiny().encode(clip(b=1, t=2, size=48)).latents.shape == (1, 1, N, D)
    with pytest.raises(ValueError, match="1- or 3-channel"):
        preprocess(torch.rand(1, 2, 2, CROP, CROP), CROP)


def test_frames_must_be_a_multiple_of_the_tubelet():
    with pytest.raises(ValueError, match="T=3.*tubelet_size=2"):
        tiny().encode(clip(t=3))


# ------------------------------------------------------------------------------ windows


def test_windows_keep_the_future_out_of_the_context_latents():
    frames = clip(b=1, t=4)
    other_future = frames.clone()
    other_future[:, 2:] = torch.rand(1, 2, 3, CROP, CROP)
    windowed = tiny(window_frames=2)
    a, b = windowed.encode(frames).latents, windowed.encode(other_future).latents
    assert torch.equal(a[:, :1], b[:, :1]) and not torch.allclose(a[:, 1:], b[:, 1:])
    whole = tiny(window_frames=None)  # the leak the windows avoid
    assert not torch.allclose(whole.encode(frames).latents[:, :1], whole.encode(other_future).latents[:, :1])


def test_windows_equal_encoding_each_window_alone():
    frames = clip(b=2, t=6)
    windowed = tiny(window_frames=2).encode(frames).latents
    whole = tiny(window_frames=None)
    alone = torch.cat([whole.encode(frames[:, k:k + 2]).latents for k in (0, 2, 4)], dim=1)
    assert torch.allclose(windowed, alone, atol=1e-5)


def test_a_shorter_last_window_and_a_clip_shorter_than_a_window():
    frames = clip(b=2, t=6)
    whole = tiny(window_frames=None)
    windowed = tiny(window_frames=4).encode(frames).latents  # windows of 4 and 2 frames
    alone = torch.cat([whole.encode(frames[:, :4]).latents, whole.encode(frames[:, 4:]).latents], dim=1)
    assert windowed.shape[1] == 3 and torch.allclose(windowed, alone, atol=1e-5)
    assert torch.allclose(tiny(window_frames=8).encode(frames).latents, whole.encode(frames).latents, atol=1e-5)


def test_window_frames_validation():
    with pytest.raises(ValueError, match="window_frames=3"):
        tiny(window_frames=3)
    with pytest.raises(ValueError, match="T=5.*tubelet_size=2"):
        tiny(window_frames=4).encode(clip(t=5))


# ------------------------------------------------------------------------------ frozen


def test_frozen_eval_no_grad_no_training_no_decoder():
    backbone = tiny()
    assert all(not p.requires_grad for p in backbone.parameters())
    backbone.train()
    assert not any(m.training for m in backbone.modules())
    with torch.enable_grad():
        assert not backbone.encode(clip(b=1, t=2)).latents.requires_grad
    with pytest.raises(RuntimeError, match="frozen.*not trainable"):
        backbone(clip(b=1, t=2))
    with pytest.raises(ValueError, match="no pixel decoder.*latent space"):
        backbone.decode(Latents(torch.zeros(1, 1, N, D)))


# ------------------------------------------------------------------------------ predictor


def test_predict_future_shape_and_the_encoder_sees_only_the_context():
    backbone = tiny()
    seen = []
    hook = backbone.model.encoder.embeddings.patch_embeddings.register_forward_hook(
        lambda module, inputs, output: seen.append(inputs[0].shape[2]))  # (B, C, T, H, W)
    pred = backbone.predict_future(clip(b=2, t=4), num_future_latent_frames=3)
    hook.remove()
    assert pred.shape == (2, 3, N, D) and pred.dtype == torch.float32 and torch.isfinite(pred).all()
    assert seen == [4]
    assert not torch.allclose(pred, backbone.predict_future(clip(b=2, t=4, seed=2), 3))


def test_predict_future_matches_the_models_masked_forward():
    """Without attention layers the encoder cannot leak, so VJEPA2Model.forward with the same
    context/target masks on the full clip (any future content) must give the same predictions."""
    backbone = tiny(config={"num_hidden_layers": 0})
    frames = clip(b=2, t=8)  # 2 context latent frames + 2 future
    nc, nf = 2 * N, 2 * N
    out = backbone.model(normalize(frames), context_mask=[torch.arange(nc).expand(2, nc)],
                         target_mask=[torch.arange(nc, nc + nf).expand(2, nf)])
    expected = out.predictor_output.last_hidden_state.reshape(2, 2, N, D)
    assert torch.allclose(backbone.predict_future(frames[:, :4], 2), expected, atol=1e-5)


def test_predict_future_errors():
    backbone = tiny()
    with pytest.raises(ValueError, match="num_future_latent_frames"):
        backbone.predict_future(clip(t=4), 0)
    with pytest.raises(ValueError, match="T=3"):
        backbone.predict_future(clip(t=3), 1)


# ------------------------------------------------------------------------------ loading


def test_loads_a_local_directory_and_detects_missing_predictor(tmp_path):
    source = tiny(init_seed=3)
    source.model.save_pretrained(tmp_path)
    loaded = VJEPA2Backbone(pretrained=str(tmp_path), crop_size=CROP)
    frames = clip(b=1, t=4)
    assert loaded.has_predictor
    assert torch.equal(loaded.encode(frames).latents, source.encode(frames).latents)
    assert torch.equal(loaded.predict_future(frames, 1), source.predict_future(frames, 1))
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training

    weights = load_file(tmp_path / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("predictor.")},
              tmp_path / "model.safetensors", metadata={"format": "pt"})
    encoder_only = VJEPA2Backbone(pretrained=str(tmp_path), crop_size=CROP)
    assert not encoder_only.has_predictor
    assert torch.equal(encoder_only.encode(frames).latents, source.encode(frames).latents)
    with pytest.raises(ValueError, match="no predictor weights"):
        encoder_only.predict_future(frames, 1)


def test_missing_local_directory_fails_fast(tmp_path):
    start = time.monotonic()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VJEPA2Backbone(pretrained=str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="no V-JEPA 2 model in that directory"):
        VJEPA2Backbone(pretrained=str(tmp_path))
    assert time.monotonic() - start < 3.0


class Hub:
    """The network side of ``from_pretrained`` mocked: the cache lookup (``local_files_only=True``) is the real
    one (a miss in an empty cache); a download returns a tiny random model; the Hub's HEAD request
    (``get_hf_file_metadata``) answers, or raises ``probe_error``. Every call is recorded."""

    def __init__(self, monkeypatch, probe_error: Exception | None = None, download_error: Exception | None = None):
        from huggingface_hub import constants
        from transformers import VJEPA2Model

        self.lookups, self.downloads, self.probes = [], [], []
        self.probe_error, self.download_error = probe_error, download_error
        self._real = VJEPA2Model.from_pretrained
        monkeypatch.setattr(VJEPA2Model, "from_pretrained", self.from_pretrained)
        monkeypatch.setattr("huggingface_hub.get_hf_file_metadata", self.get_hf_file_metadata)
        # Online unless a test sets HF_HUB_OFFLINE: CI sets it, and huggingface_hub reads it at import.
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)

    def from_pretrained(self, source, **kwargs):
        if kwargs["local_files_only"]:
            self.lookups.append((source, kwargs))
            return self._real(source, **kwargs)
        self.downloads.append((source, kwargs))
        if self.download_error is not None:
            raise self.download_error
        return tiny(init_seed=5).model, {"missing_keys": []}

    def get_hf_file_metadata(self, url, timeout=None, **kwargs):
        self.probes.append((url, timeout))
        if self.probe_error is not None:
            raise self.probe_error
        return object()


def test_an_uncached_hub_id_is_downloaded_into_the_cache(tmp_path, monkeypatch):
    hub = Hub(monkeypatch)
    cache = str(tmp_path / "hub")
    loaded = VJEPA2Backbone(pretrained=DEFAULT_CHECKPOINT, crop_size=CROP, cache_dir=cache)
    assert [(source, kw["cache_dir"]) for source, kw in hub.lookups] == [(DEFAULT_CHECKPOINT, cache)]
    assert [(source, kw["cache_dir"], kw["crop_size"]) for source, kw in hub.downloads] == [
        (DEFAULT_CHECKPOINT, cache, CROP)]
    assert [url for url, _ in hub.probes] == [f"https://huggingface.co/{DEFAULT_CHECKPOINT}/resolve/main/config.json"]
    assert 0 < hub.probes[0][1] <= 60  # a bounded HEAD request, not the download's retries
    assert loaded.has_predictor and loaded.latent_dim == D
    frames = clip(b=1, t=4)
    assert torch.equal(loaded.encode(frames).latents, tiny(init_seed=5).encode(frames).latents)


def _assert_clear_offline_message(message: str, cache: str, reason: str) -> None:
    for part in (f"'{DEFAULT_CHECKPOINT}'", reason, "HF_HUB_OFFLINE", f"hf download {DEFAULT_CHECKPOINT}",
                 f"huggingface-cli download {DEFAULT_CHECKPOINT}", "backbone.params.pretrained=/path/to/dir", cache,
                 "fails here at once instead of retrying"):
        assert part in message, part
    assert "never downloads" not in message


def test_offline_mode_fails_at_once_without_asking_the_hub(tmp_path, monkeypatch):
    hub = Hub(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # read when the backbone is built, not at import
    cache = str(tmp_path / "hub")
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as error:
        VJEPA2Backbone(pretrained=DEFAULT_CHECKPOINT, cache_dir=cache)
    assert time.monotonic() - start < 3.0
    assert len(hub.lookups) == 1 and hub.downloads == [] and hub.probes == []
    _assert_clear_offline_message(str(error.value), cache, "offline mode is on")


def test_no_connection_fails_fast_with_the_clear_message(tmp_path, monkeypatch):
    hub = Hub(monkeypatch, probe_error=ConnectionError("[Errno 101] Network is unreachable"))
    cache = str(tmp_path / "hub")
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as error:
        VJEPA2Backbone(pretrained=DEFAULT_CHECKPOINT, cache_dir=cache)
    assert time.monotonic() - start < 3.0
    assert len(hub.probes) == 1 and hub.downloads == []
    _assert_clear_offline_message(str(error.value), cache, "the Hugging Face Hub cannot be reached")
    assert "ConnectionError: [Errno 101] Network is unreachable" in str(error.value)


def test_a_failed_download_gives_the_clear_message(tmp_path, monkeypatch):
    hub = Hub(monkeypatch, download_error=OSError("We couldn't connect to 'https://huggingface.co'"))
    with pytest.raises(FileNotFoundError) as error:
        VJEPA2Backbone(pretrained=DEFAULT_CHECKPOINT, cache_dir=str(tmp_path / "hub"))
    assert len(hub.downloads) == 1
    assert "cannot be downloaded: the download failed: We couldn't connect" in str(error.value)


def test_constructor_validation():
    with pytest.raises(ValueError, match="exactly one"):
        VJEPA2Backbone(pretrained=DEFAULT_CHECKPOINT, config=TINY)
    with pytest.raises(ValueError, match="exactly one"):
        VJEPA2Backbone(pretrained=None, config=None)
    with pytest.raises(ValueError, match="backbone.params.config.hidden_sise"):
        tiny(config={"hidden_sise": 8})
    with pytest.raises(ValueError, match="crop_size=36"):
        VJEPA2Backbone(pretrained=None, config=TINY, crop_size=36)
    with pytest.raises(ValueError, match="backbone.params.dtype"):
        tiny(dtype="float64")


# ------------------------------------------------------------------------------ configs


def test_tiny_preset_builds_a_model_with_a_regression_head():
    # head.params.context_latents: null: the dataset's context frames in latent frames: 10 frames / tubelet 2 = 5.
    cfg = compose_config(["backbone=vjepa2_tiny", "head=transformer",
                          "head.params.d_model=32", "head.params.num_layers=1"])
    model = build_model(cfg)
    assert model.head.context_latents == 5 and model.head.future_latents == 5
    assert isinstance(model.backbone, VJEPA2Backbone) and model.backbone.window_frames == 10
    assert model.spec == LatentSpec(latent_dim=64, grid=(8, 8), codebook_size=None, temporal_downsample=2)
    z = model.encode(torch.rand(1, 20, 3, 64, 64))
    assert z.latents.shape == (1, 10, 64, 64)
    assert torch.isfinite(model.head(z)["loss"])


def test_pretrained_preset_without_cached_weights_raises_a_clear_error(monkeypatch):
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(DEFAULT_CHECKPOINT, "config.json"), str):
        pytest.skip(f"{DEFAULT_CHECKPOINT} is cached on this machine")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never a 1.2 GB download from a test, whatever the environment
    cfg = compose_config(["backbone=vjepa2"])
    assert cfg.backbone.params.window_frames == cfg.dataset.context_frames
    with pytest.raises(FileNotFoundError, match="huggingface-cli download"):
        build_backbone(cfg)


def test_random_weights_depend_on_init_seed_only():
    torch.manual_seed(123)
    a = tiny()
    torch.manual_seed(456)  # the global RNG does not matter
    b = tiny()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = tiny(init_seed=1)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))
