"""trainer.ema: the average's rule, its checkpoint and exact resume, and which weights evaluation loads."""

import logging

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from _training_toys import ToyRegression, ToyRegressor, stage_cfg, trainer_cfg
from futurelat.training.checkpoint import load_checkpoint
from futurelat.training.config_match import load_checked_weights
from futurelat.training.ema import EMA, ema_decay, eval_weights_key
from futurelat.training.trainer import Trainer


def test_decay_warms_up_to_its_value():
    assert ema_decay(0.999, 0, True) == 0.1 and ema_decay(0.999, 10, True) == 11 / 20
    assert ema_decay(0.9, 1000, True) == 0.9 and ema_decay(0.999, 0, False) == 0.999


def test_the_average_follows_the_rule_for_parameters_and_buffers():
    module = nn.BatchNorm1d(3)  # a weight, a float buffer (running_mean) and an int buffer (num_batches_tracked)
    ema = EMA(module, decay=0.5, warmup=False)
    expected = module.weight.detach().clone()
    for step in range(1, 5):
        with torch.no_grad():
            module.weight.fill_(float(step))
            module.running_mean.fill_(float(step))
            module.num_batches_tracked.fill_(step)
        ema.update(module)
        expected = module.weight.detach().clone() if step == 1 else 0.5 * expected + 0.5 * module.weight.detach()
    assert torch.allclose(ema.module.weight, expected) and torch.allclose(ema.module.weight, torch.full((3,), 3.125))
    assert torch.allclose(ema.module.running_mean, torch.full((3,), 3.125))
    assert int(ema.module.num_batches_tracked) == 4 and ema.updates == 4
    assert not torch.equal(ema.module.weight, module.weight)  # the average, not a copy of the last weights


def _trainer(run_dir, decay=0.9, **cfg):
    torch.manual_seed(0)
    settings = trainer_cfg(ema={"decay": decay, "stages": ["head"], "warmup": True}, **cfg)
    return Trainer(ToyRegressor(dropout=0.3), ToyRegression(), settings, stage_cfg(max_steps=12, warmup_steps=3),
                   run_dir=run_dir, name="head")


def test_checkpoints_hold_the_average_and_a_resumed_run_continues_it_exactly(tmp_path):
    ref = _trainer(tmp_path / "ref")
    ref.fit()
    ckpt = load_checkpoint(tmp_path / "ref" / "checkpoints" / "head_final.pt")
    assert ckpt["ema"] == {"decay": 0.9, "warmup": True, "updates": 12}
    assert set(ckpt["ema_model"]) == set(ckpt["model"])
    assert any(not torch.equal(ckpt["ema_model"][k], ckpt["model"][k]) for k in ckpt["model"])

    crashed = _trainer(tmp_path / "run", ckpt_every=5)
    forward = crashed.module.forward
    crashed.module.forward = lambda **kw: (_ for _ in ()).throw(KeyboardInterrupt) if len(
        crashed.module.losses) >= 7 else forward(**kw)
    with pytest.raises(KeyboardInterrupt):
        crashed.fit()
    resumed = _trainer(tmp_path / "run", resume=True)
    resumed.fit()
    assert resumed.ema.updates == 12
    for k, v in ref.ema.module.state_dict().items():
        assert torch.equal(v, resumed.ema.module.state_dict()[k]), k


def test_a_checkpoint_without_an_average_starts_one_with_a_warning(tmp_path, caplog):
    _trainer(tmp_path, decay=None).fit()  # no EMA kept
    assert "ema_model" not in load_checkpoint(tmp_path / "checkpoints" / "head_final.pt")
    settings = trainer_cfg(ema={"decay": 0.9}, resume=True)
    later = Trainer(ToyRegressor(), ToyRegression(), settings, stage_cfg(max_steps=14, warmup_steps=3),
                    run_dir=tmp_path, name="head")
    with caplog.at_level(logging.WARNING):
        later.fit()
    assert "holds no EMA weights; the EMA starts at its step-12 weights" in caplog.text
    assert later.ema.updates == 2 and later.step == 14


def test_bad_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"trainer.ema.decay must be in \(0, 1\)"):
        _trainer(tmp_path, decay=1.0)
    with pytest.raises(ValueError, match=r"trainer.ema.stages: unknown stage\(s\) \['tokenizer'\]"):
        Trainer(ToyRegressor(), ToyRegression(), trainer_cfg(ema={"decay": 0.9, "stages": ["tokenizer"]}),
                stage_cfg(), run_dir=tmp_path, name="head")


def test_evaluation_loads_the_average_unless_told_otherwise(tmp_path):
    ref = _trainer(tmp_path)
    ref.fit()
    path = str(tmp_path / "checkpoints" / "head_final.pt")
    for choice, want in (("auto", ref.ema.module), ("ema", ref.ema.module), ("raw", ref.module)):
        cfg = OmegaConf.create({"head": {"checkpoint": path}, "eval": {"weights": choice}})
        loaded = load_checked_weights(cfg, "head", ToyRegressor())
        assert torch.equal(loaded.net[0].weight, want.net[0].weight), choice
    assert eval_weights_key("auto", False, "x") == "model"
    with pytest.raises(ValueError, match="eval.weights=ema, but run/ kept no EMA weights"):
        eval_weights_key("ema", False, "run/")
    with pytest.raises(ValueError, match="eval.weights must be one of"):
        eval_weights_key("best", True, "run/")
