"""Every config and preset composes and builds; bad names and pairs fail clearly, before training."""

from __future__ import annotations

import pytest
import torch

from futurelat.models.base import Latents
from futurelat.models.latent_video_model import LatentVideoModel, build_model
from futurelat.registry import BACKBONES, HEADS

from composing import EXPERIMENTS, compose_config, tiny_config


def test_default_config_composes_to_the_main_job():
    cfg = compose_config()
    assert (cfg.dataset.name, cfg.backbone.name, cfg.head.name) == ("moving_mnist", "vqvae", "mamba")
    assert cfg.logger.name == "wandb" and cfg.logger.mode == "offline"
    assert list(cfg.stages) == ["backbone", "head", "evaluate"]


def test_default_preset_equals_default_config():
    assert compose_config(["+experiment=mmnist_vqvae_mamba"]) == compose_config()


def _needs_hub_weights(cfg) -> bool:
    """A preset whose backbone loads pretrained weights that this machine has not cached."""
    from huggingface_hub import try_to_load_from_cache

    pretrained = cfg.backbone.get("params", {}).get("pretrained")
    return bool(pretrained) and not isinstance(try_to_load_from_cache(pretrained, "config.json"), str)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_preset_composes_and_builds(experiment, monkeypatch):
    cfg = compose_config([f"+experiment={experiment}"])
    if _needs_hub_weights(cfg):
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never a download from a test, whatever the environment
        # No download here: the builder says how to get the weights; the preset's head is then
        # built on the tiny random V-JEPA 2 (same latent layout, smaller D), one layer deep.
        with pytest.raises(FileNotFoundError, match="huggingface-cli download"):
            build_model(cfg)
        cfg = compose_config([f"+experiment={experiment}", "backbone=vjepa2_tiny", "head.params.num_layers=1"])
    model = build_model(cfg)
    assert isinstance(model, LatentVideoModel)
    size = cfg.dataset.image_size
    step = model.spec.temporal_downsample
    num_frames = 1 + step if model.spec.first_frame_alone else 2 * step  # two latent frames
    frames = torch.rand(1, num_frames, cfg.dataset.channels, size, size)
    z = model.encode(frames)
    n = model.spec.tokens_per_frame
    assert z.latents.shape == (1, 2, n, model.spec.latent_dim)
    if model.spec.discrete:
        assert z.codes.shape == (1, 2, n) and z.codes.dtype == torch.int64
    else:
        assert z.codes is None
    if "context_latents" in cfg.head.params:  # null in the YAML: the dataset's context frames in latent frames
        assert model.head.context_latents == model.spec.latent_frames(cfg.dataset.context_frames)


def test_large_preset_changes_only_what_it_says():
    cfg = compose_config(["+experiment=mmnist_vqvae_mamba_large"])
    assert cfg.head.params.ordering == "token"
    assert cfg.trainer.precision == "bf16"
    assert cfg.dataset == compose_config().dataset


def test_tiny_model_rolls_out_frames():
    model = build_model(tiny_config())
    model.backbone.freeze()
    context = torch.rand(2, 10, 3, 64, 64)
    future = model.rollout(context, 3)
    assert future.shape == (2, 3, 3, 64, 64)
    assert 0 <= future.min() and future.max() <= 1


def test_unknown_group_option_lists_the_valid_ones():
    with pytest.raises(Exception) as err:
        compose_config(["head=mambaa"])
    assert "mambaa" in str(err.value) and "mamba" in str(err.value).replace("mambaa", "")


def test_unknown_key_is_rejected():
    with pytest.raises(Exception) as err:
        compose_config(["trainer.max_stepz=3"])
    assert "max_stepz" in str(err.value)


def test_unknown_backbone_name_lists_the_valid_ones():
    with pytest.raises(KeyError, match="unknown backbone 'vqvea'.*vqvae"):
        build_model(compose_config(["backbone.name=vqvea"]))


def test_unknown_head_param_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"head\.params\.widht.*valid keys:.*d_model"):
        build_model(compose_config(["+head.params.widht=3"]))


def test_frame_size_not_divisible_by_the_tokenizer_is_rejected():
    with pytest.raises(ValueError, match="63x63 is not divisible"):
        build_model(compose_config(["dataset.image_size=63"]))


def test_code_head_on_a_continuous_backbone_is_rejected(monkeypatch):
    """A head that predicts codes needs a backbone with a codebook: the builder says why."""
    from futurelat.models.backbones.vqvae import VQVAE
    from futurelat.models.base import LatentSpec

    class Continuous(VQVAE):
        discrete = False

        def latent_spec(self, frame_size):
            spec = super().latent_spec(frame_size)
            return LatentSpec(spec.latent_dim, spec.grid, codebook_size=None)

    monkeypatch.setitem(BACKBONES._entries, "continuous_test", Continuous)
    with pytest.raises(ValueError, match=r"head 'mamba' \(objective 'autoregressive'\) predicts codes and needs a discrete backbone.*'continuous_test'"):
        build_model(compose_config(["backbone.name=continuous_test"]))


def test_registry_rejects_a_second_class_under_one_name():
    with pytest.raises(KeyError, match="registered twice"):
        HEADS.register("mamba")(type("Other", (), {}))


def test_latents_index_time():
    z = Latents(torch.zeros(2, 5, 4, 3), torch.zeros(2, 5, 4, dtype=torch.long))
    assert z[:2].latents.shape == (2, 2, 4, 3) and z[3:].codes.shape == (2, 2, 4)
