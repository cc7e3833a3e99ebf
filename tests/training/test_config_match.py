"""A checkpoint's stored config is checked against this run's before its weights are loaded."""

from __future__ import annotations

import logging

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from composing import tiny_config
from futurelat.training.checkpoint import save_checkpoint
from futurelat.training.config_match import ABSENT, load_checked_weights, model_config_differences

HEAD = ["head=transformer", "head.params.target=residual"]


def _checkpoint(tmp_path, overrides: list[str] | None, module: nn.Module):
    """A trainer-style checkpoint of ``module`` storing the config composed with ``overrides`` (None: no config)."""
    config_yaml = None if overrides is None else OmegaConf.to_yaml(tiny_config(overrides), resolve=True)
    return save_checkpoint({"model": module.state_dict(), "config_yaml": config_yaml}, tmp_path / "head_final.pt")


def _pair(tmp_path, stored: list[str] | None, current: list[str]):
    """(saved module, fresh module, this run's config pointing head.checkpoint at the saved one)."""
    saved, fresh = nn.Linear(3, 2), nn.Linear(3, 2)
    path = _checkpoint(tmp_path, stored, saved)
    return saved, fresh, tiny_config([*current, f"head.checkpoint={path}"])


def test_a_differing_model_key_is_refused_naming_it_and_both_values(tmp_path):
    saved, fresh, cfg = _pair(tmp_path, HEAD, ["head=transformer"])  # forgot head.params.target=residual
    before = fresh.weight.clone()
    with pytest.raises(ValueError) as err:
        load_checked_weights(cfg, "head", fresh)
    message = str(err.value)
    assert "head.params.target: checkpoint 'residual', this run 'absolute'" in message
    assert "head_final.pt" in message and "head.allow_config_mismatch=true" in message
    assert message.count("\n  ") == 1  # only that key: checkpoint paths and the like are not compared
    assert torch.equal(fresh.weight, before)  # nothing loaded


def test_the_override_loads_with_a_warning(tmp_path, caplog):
    saved, fresh, cfg = _pair(tmp_path, HEAD, ["head=transformer", "head.allow_config_mismatch=true"])
    with caplog.at_level(logging.WARNING, logger="futurelat.training.config_match"):
        load_checked_weights(cfg, "head", fresh)
    assert torch.equal(fresh.weight, saved.weight)
    assert "head.params.target: checkpoint 'residual', this run 'absolute'" in caplog.text
    assert "head.allow_config_mismatch=true" in caplog.text


def test_an_identical_model_config_loads_silently(tmp_path, caplog):
    # Sampling, dropout and the checkpoint path do not define the model: they may differ.
    current = [*HEAD, "head.params.sampling.temperature=0.5", "head.params.dropout=0.1"]
    saved, fresh, cfg = _pair(tmp_path, HEAD, current)
    with caplog.at_level(logging.WARNING):
        load_checked_weights(cfg, "head", fresh)
    assert torch.equal(fresh.weight, saved.weight)
    assert caplog.records == []


def test_a_checkpoint_without_a_config_loads_with_a_warning(tmp_path, caplog):
    saved, fresh, cfg = _pair(tmp_path, None, HEAD)
    with caplog.at_level(logging.WARNING, logger="futurelat.training.config_match"):
        load_checked_weights(cfg, "head", fresh)
    assert torch.equal(fresh.weight, saved.weight)
    assert "stores no config" in caplog.text and "head_final.pt" in caplog.text


def test_which_keys_define_a_backbone_and_a_head_checkpoint():
    stored = {"backbone": {"name": "vqvae", "checkpoint": None, "params": {"hidden_channels": 8, "ema_decay": 0.9}},
              "head": {"name": "mamba", "params": {"d_model": 32}}, "dataset": {"future_frames": 10}}
    current = {"backbone": {"name": "vqvae", "checkpoint": "/x.pt", "params": {"hidden_channels": 16, "ema_decay": 0.5}},
               "head": {"name": "mamba", "params": {"d_model": 64, "new_key": 1}}, "dataset": {"future_frames": 20}}
    assert model_config_differences(stored, current, "backbone") == [("backbone.params.hidden_channels", 8, 16)]
    assert model_config_differences(stored, current, "head") == [
        ("backbone.params.hidden_channels", 8, 16), ("dataset.future_frames", 10, 20),
        ("head.params.d_model", 32, 64), ("head.params.new_key", ABSENT, 1)]


def test_a_param_stored_under_its_old_name_is_compared_under_the_new_one():
    """Heads written before 2026-11-30 stored ``head.params.context_frames`` (now ``context_latents``)."""
    old = {"head": {"name": "transformer", "params": {"context_frames": 5, "d_model": 32}}}
    assert model_config_differences(old, {"head": {"name": "transformer", "params": {
        "context_latents": 5, "d_model": 32}}}, "head") == []
    assert model_config_differences(old, {"head": {"name": "transformer", "params": {
        "context_latents": 4, "d_model": 32}}}, "head") == [("head.params.context_latents", 5, 4)]


def test_a_param_added_later_compares_as_the_value_that_reproduces_older_checkpoints():
    """Heads written before 2026-11-30 store no ``frame_decoding``: they decode frames independently."""
    old = {"head": {"name": "mamba", "params": {"d_model": 32}}}
    assert model_config_differences(old, {"head": {"name": "mamba", "params": {
        "d_model": 32, "frame_decoding": "independent"}}}, "head") == []
    assert model_config_differences(old, {"head": {"name": "mamba", "params": {
        "d_model": 32, "frame_decoding": "maskgit"}}}, "head") == [
        ("head.params.frame_decoding", "independent", "maskgit")]
