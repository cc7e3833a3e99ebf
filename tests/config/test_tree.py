"""The lightning-hydra-template tree: trainer/{default,cpu,gpu,ddp}, eval/, cache/, debug/, and
presets that select these instead of repeating their blocks."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from composing import CONFIG_DIR, EXPERIMENTS, TINY, TINY_BACKBONE, TINY_COMMON, compose_config, tiny_config

GPU = {"device": "cuda", "precision": "bf16", "num_workers": 8, "log_every": 100, "ckpt_every": 2000,
       "cpu_malloc": "system"}


def _differences(a, b, prefix=""):
    """Dotted keys whose values differ between two resolved containers."""
    out = set()
    for key in set(a) | set(b):
        x, y = a.get(key, "<absent>"), b.get(key, "<absent>")
        if isinstance(x, dict) and isinstance(y, dict):
            out |= _differences(x, y, f"{prefix}{key}.")
        elif x != y:
            out.add(f"{prefix}{key}")
    return out


def _resolved(overrides):
    return OmegaConf.to_container(compose_config(overrides), resolve=True)


@pytest.mark.parametrize("option", ["cpu", "gpu", "ddp"])
def test_trainer_variants_change_only_their_keys(option):
    default, variant = _resolved([]), _resolved([f"trainer={option}"])
    changed = {"cpu": {"device"}, "gpu": set(GPU), "ddp": set(GPU)}[option]
    assert _differences(default["trainer"], variant["trainer"]) == changed
    if option != "cpu":
        assert {k: variant["trainer"][k] for k in GPU} == GPU


@pytest.mark.parametrize("experiment", ["mmnist_vqvae_mamba_large", "vjepa2_deterministic", "vjepa2_flow"])
def test_gpu_presets_select_trainer_gpu(experiment):
    raw = OmegaConf.load(CONFIG_DIR / "experiment" / f"{experiment}.yaml")
    assert {"override /trainer": "gpu"} in OmegaConf.to_container(raw.defaults)
    assert not set(GPU) & set(raw.get("trainer", {}))  # not repeated in the preset
    assert {k: v for k, v in _resolved([f"+experiment={experiment}"])["trainer"].items() if k in GPU} == GPU


@pytest.mark.parametrize(("tiny", "full"), [("vjepa2_flow_tiny", "vjepa2_flow"),
                                            ("vjepa2_deterministic_tiny", "vjepa2_deterministic")])
def test_tiny_presets_inherit_their_full_preset(tiny, full):
    raw = OmegaConf.load(CONFIG_DIR / "experiment" / f"{tiny}.yaml")
    assert OmegaConf.to_container(raw.defaults)[0] == full
    small, large = _resolved([f"+experiment={tiny}"]), _resolved([f"+experiment={full}"])
    assert small["head"]["name"] == large["head"]["name"] and small["dataset"]["name"] == large["dataset"]["name"]
    assert small["trainer"]["device"] == "cpu" and small["backbone"]["params"]["pretrained"] is None
    assert small["eval"]["max_sequences"] is None and large["eval"]["max_sequences"] == 2000


def test_debug_tiny_is_the_test_shrink():
    cfg = tiny_config()
    assert cfg == compose_config(["+debug=tiny"])  # the tests' TINY is configs/debug/tiny.yaml
    assert cfg.logger.name == "none" and cfg.trainer.device == "cpu" and cfg.trainer.head.max_steps == 2
    assert (cfg.backbone.params.hidden_channels, cfg.backbone.params.codebook_size) == (8, 32)
    assert cfg.dataset.test_sequences == 4 and cfg.head.params.d_model == 32


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_debug_tiny_after_a_preset_wins_over_it(experiment):
    """``+experiment=NAME +debug=tiny`` as a user types it: the same job as the tests' overrides."""
    if experiment.startswith("vjepa2"):  # V-JEPA 2 on a latent cache: no vqvae or Moving MNIST sizes
        drop = ["debug/backbone@backbone=none", "debug/dataset@dataset=none"]
        tiny = [o for o in TINY if not o.startswith(("backbone.", "dataset."))]
    elif experiment.startswith("steamboat"):  # MAGVIT-v2 on a video file: its own tiny sizes, no Moving MNIST ones
        drop = ["debug/backbone@backbone=magvit2_fsq", "debug/dataset@dataset=none"]
        tiny = [o for o in TINY_COMMON if not o.startswith("dataset.")] + TINY_BACKBONE["magvit2_fsq"]
    else:
        drop, tiny = [], TINY
    cfg = compose_config([f"+experiment={experiment}", "+debug=tiny", *drop])
    assert cfg == compose_config([f"+experiment={experiment}", *tiny])
    assert cfg.trainer.device == "cpu" and cfg.trainer.head.max_steps == 2
    assert cfg.head.params.num_layers == 1 and cfg.eval.batch_size == 2 and cfg.logger.name == "none"


def test_debug_overfit_trains_on_a_few_fixed_clips():
    cfg = compose_config(["+debug=overfit"])
    assert cfg.dataset.train_sequences == 8 == cfg.trainer.head.batch_size == cfg.eval.max_sequences


def test_eval_and_cache_live_in_their_groups():
    assert _resolved(["eval=latent"])["eval"] == _resolved(["+experiment=vjepa2_flow"])["eval"]
    main = OmegaConf.load(CONFIG_DIR / "main.yaml")
    assert "eval" not in main and "cache" not in main
    assert {"eval": "default"} in OmegaConf.to_container(main.defaults)
    assert {"cache": "default"} in OmegaConf.to_container(main.defaults)
