"""One source of defaults: the schemas in futurelat/config/. The YAML options set only what
differs from them, and the Python entry points (backbone constructors, dataset builders, trainer
and cache settings) read their defaults from them."""

from __future__ import annotations

import dataclasses
import importlib
import inspect

import pytest
from omegaconf import OmegaConf

from futurelat.cache import CacheSettings
from futurelat.config import SCHEMAS
from futurelat.config.backbone import MAGVIT2Params, VJEPA2Params, VJEPA2TinyParams, VQVAEParams
from futurelat.config.run import CacheConfig
from futurelat.config.trainer import StageSchedule, TrainerSettings
from futurelat.datasets.moving_mnist import build_moving_mnist
from futurelat.models.backbones.magvit2 import MAGVIT2
from futurelat.models.backbones.vjepa2 import VJEPA2Backbone
from futurelat.models.backbones.vqvae import VQVAE
from futurelat.registry import HEADS

from composing import CONFIG_DIR

#: Schemas of the heads in configs/head/ (base_head, AnyHeadConfig, is for a head of one's own).
HEAD_SCHEMAS = [(n.removeprefix("base_"), s) for g, n, s in SCHEMAS if g == "head" and n != "base_head"]
#: YAML option -> the schema its defaults list starts with.
OPTIONS = {f"{group}/{name.removeprefix('base_')}.yaml": (name, schema)
           for group, name, schema in SCHEMAS if group is not None and name != "base_head"}
OPTIONS.update({"dataset/kinetics_400_cached.yaml": OPTIONS.pop("dataset/latent_cache.yaml"),
                "trainer/default.yaml": OPTIONS.pop("trainer/trainer.yaml"),
                "eval/default.yaml": OPTIONS.pop("eval/eval.yaml"),
                "cache/default.yaml": OPTIONS.pop("cache/cache.yaml")})


def _leaves(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_yaml_option_starts_with_its_schema_and_restates_no_default(option):
    base, schema = OPTIONS[option]
    raw = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / option))
    assert raw.pop("defaults")[:1] == [base]
    defaults = dict(_leaves(OmegaConf.to_container(OmegaConf.structured(schema))))
    restated = {key: value for key, value in _leaves(raw) if key in defaults and defaults[key] == value}
    assert not restated, f"{option} restates the schema's defaults {restated}"


def test_every_group_option_builds_on_a_schema():
    """Each option's defaults list starts with a schema (base_*) or another option of its group."""
    for group in ("dataset", "backbone", "head", "trainer", "eval", "cache", "logger"):
        for path in (CONFIG_DIR / group).glob("*.yaml"):
            first = OmegaConf.load(path).defaults[0]
            assert first.startswith("base_") or (CONFIG_DIR / group / f"{first}.yaml").exists(), path


def _defaults(fn) -> dict:
    return {name: p.default for name, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


def test_backbone_constructors_default_to_the_schema():
    vqvae = _defaults(VQVAE.__init__)
    assert {**dataclasses.asdict(VQVAEParams()), "channel_mult": tuple(VQVAEParams().channel_mult)} == \
        {k: v for k, v in vqvae.items() if k != "in_channels"}
    assert (vqvae["hidden_channels"], vqvae["codebook_size"]) == (32, 128)  # were 64 and 512 in Python
    magvit2 = _defaults(MAGVIT2.__init__)
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in dataclasses.asdict(MAGVIT2Params()).items()} == \
        {k: v for k, v in magvit2.items() if k != "in_channels"}
    vjepa2 = _defaults(VJEPA2Backbone.__init__)
    assert {**dataclasses.asdict(VJEPA2Params()), "init_seed": VJEPA2TinyParams.init_seed} == vjepa2


@pytest.mark.parametrize("name, schema", HEAD_SCHEMAS)
def test_head_params_are_the_head_constructor_keywords(name, schema):
    keywords = set(inspect.signature(HEADS.get(name).__init__).parameters) - {"self", "spec", "num_frames"}
    params = {f.name for f in dataclasses.fields(schema.__dataclass_fields__["params"].default_factory())}
    assert params <= keywords, params - keywords


@pytest.mark.parametrize("name, schema", HEAD_SCHEMAS)
def test_head_constructors_default_to_the_schema(name, schema):
    """One source: a head built in Python gets what the config gets (``sampling=None``: the schema's
    sampling; ``context_latents`` has no default, the builder derives it from the dataset)."""
    params = dataclasses.asdict(schema.__dataclass_fields__["params"].default_factory())
    defaults = _defaults(HEADS.get(name).__init__)
    assert defaults.pop("sampling") is None and "context_latents" not in defaults
    assert defaults == {k: v for k, v in params.items() if k not in ("sampling", "context_latents")}
    sampling = importlib.import_module("futurelat.models.heads.flow" if name == "flow_dit"
                                       else "futurelat.models.heads.sampling").SAMPLING_DEFAULTS
    assert sampling == params["sampling"]


def test_trainer_settings_take_the_schema_defaults_and_refuse_unknown_keys():
    settings = TrainerSettings.from_cfg({"log_every": 3})
    assert settings.log_every == 3 and settings.ckpt_every == 250 and settings.head.max_steps == 6000
    with pytest.raises(ValueError, match=r"unknown trainer key trainer.no_such_key \(not in TrainerSettings\)"):
        TrainerSettings.from_cfg({"no_such_key": 1})  # was silently dropped
    with pytest.raises(ValueError, match=r"unknown trainer.head key trainer.head.no_such_key \(not in StageSchedule\)"):
        StageSchedule.from_cfg({"max_steps": 2, "batch_size": 1, "lr": 0.1, "warmup_steps": 0,
                                "min_lr_ratio": 0.1, "no_such_key": 1}, "head")
    with pytest.raises(ValueError, match=r"trainer.precision must be one of \['bf16', 'fp16', 'fp32'\]"):
        TrainerSettings.from_cfg({"precision": "fp8"})


def test_cache_settings_take_the_schema_defaults():
    settings = CacheSettings.from_cfg({"device": "cpu"})
    assert dataclasses.asdict(settings) == {**dataclasses.asdict(CacheConfig()), "device": "cpu"}
    with pytest.raises(ValueError, match=r"cache.dtype must be one of \['float32', 'float16', 'bfloat16'\]"):
        CacheSettings.from_cfg({"dtype": "int8"})


def test_dataset_builder_fills_a_partial_dict_from_the_schema():
    test = build_moving_mnist({"test_sequences": 2, "image_size": 32}, "test")
    assert len(test) == 2 and test[0]["frames"].shape == (20, 3, 32, 32)
