"""trainer.compile: a head's trunk trains through torch.compile with the eager trunk's losses and
gradients, falls back to eager mode when compiling fails, and leaves evaluation and weights alone."""

import logging

import pytest
import torch

from futurelat.config.trainer import TrainerSettings
from futurelat.models.base import Latents, LatentSpec
from futurelat.training import compile as compile_module
from futurelat.training.compile import CompiledTrunk, compiled_trunks
from head_checks import PRIOR_SPEC, make_head, perturbed_prior
from composing import tiny_config


def _codes(frames: int = 6, tokens: int = 16) -> Latents:
    """Random codes ``(2, frames, tokens)`` of the tiny prior's spec (a 4 x 4 grid: 16 tokens)."""
    codes = torch.randint(0, PRIOR_SPEC.codebook_size, (2, frames, tokens), generator=torch.Generator().manual_seed(1))
    return Latents(torch.zeros(*codes.shape, PRIOR_SPEC.latent_dim), codes)


def _loss_and_grads(head, clip):
    head.zero_grad(set_to_none=True)
    torch.manual_seed(7)  # the flow head's noise and times
    loss = head(clip)["loss"]
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in head.named_parameters() if p.grad is not None}


FLOW_SPEC = LatentSpec(latent_dim=4, grid=(4, 4), codebook_size=8)
#: flow_dit: one block, no dropout (compiled and eager dropout draw different masks), two context latents.
FLOW = dict(d_model=24, num_layers=1, num_heads=2, mlp_ratio=2.0, patch_size=2, context_latents=2, dropout=0.0,
            context_dropout=0.0, sampling={"solver": "euler", "steps": 2})


def _head_and_clip(name: str):
    """A tiny head of every trunk, weights perturbed, in training mode, and a clip for it."""
    if name != "flow_dit":
        return perturbed_prior(name, num_layers=1).train(), _codes()  # one block: a shorter compile
    torch.manual_seed(0)
    head = make_head("flow_dit", FLOW_SPEC, 4, **FLOW)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.1 * torch.randn_like(p))
    latents = torch.randn(2, 4, FLOW_SPEC.tokens_per_frame, FLOW_SPEC.latent_dim, generator=torch.Generator().manual_seed(1))
    clip = Latents(latents=latents, codes=None)
    head.train()(clip)  # the first training batch fits the latent standardization
    return head, clip


@pytest.mark.parametrize("name", ["mamba", "transformer", "flow_dit"])
def test_the_compiled_trunk_trains_like_the_eager_one(name):
    head, clip = _head_and_clip(name)
    eager_loss, eager_grads = _loss_and_grads(head, clip)
    with compiled_trunks(head, True, "test") as count:
        assert count == 1
        wrapper = head.__dict__["_training_trunk"]
        loss, grads = _loss_and_grads(head, clip)
        assert not wrapper.eager and wrapper.calls == 1  # the compiled forward ran, not the fallback
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-6)
    assert grads.keys() == eager_grads.keys() and len(grads) >= 0.8 * len(list(head.parameters()))
    for key, grad in grads.items():
        torch.testing.assert_close(grad, eager_grads[key], rtol=1e-4, atol=1e-6, msg=key)
    assert head.__dict__["_training_trunk"] is None


def test_a_failing_compiler_falls_back_to_eager_with_a_warning(monkeypatch, caplog):
    def broken_compile(module):
        def run(*args, **kwargs):
            raise RuntimeError("no C++ compiler here")
        return run

    monkeypatch.setattr(compile_module.torch, "compile", broken_compile)
    head, codes = perturbed_prior("mamba").train(), _codes()
    eager_loss, _ = _loss_and_grads(head, codes)
    with caplog.at_level(logging.WARNING, logger="futurelat.training.compile"), compiled_trunks(head, True, "stage 'head'"):
        loss, _ = _loss_and_grads(head, codes)
        again, _ = _loss_and_grads(head, codes)
        assert head.__dict__["_training_trunk"].eager
    assert torch.equal(loss, eager_loss) and torch.equal(again, eager_loss)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "stage 'head'" in warnings[0] and "no C++ compiler here" in warnings[0]


def test_an_error_of_the_trunk_itself_is_raised_again(monkeypatch):
    monkeypatch.setattr(compile_module.torch, "compile", lambda module: module)  # "compiled" = the trunk
    head = perturbed_prior("mamba").train()
    with compiled_trunks(head, True, "test"), pytest.raises(ValueError):
        head(_codes(tokens=15))  # 15 codes per frame, the grid holds 16


def test_evaluation_rollouts_and_weights_do_not_see_the_compiled_trunk(monkeypatch):
    calls = []

    def spy_compile(module):
        def run(*args, **kwargs):
            calls.append(module.training)
            return module(*args, **kwargs)
        return run

    monkeypatch.setattr(compile_module.torch, "compile", spy_compile)
    head, codes = perturbed_prior("mamba"), _codes()
    keys = list(head.state_dict())
    with compiled_trunks(head, True, "test"):
        head.train()(codes)
        head.eval()(codes)  # a validation loss: eager
        head.rollout(_codes(frames=3), 2)
        assert list(head.state_dict()) == keys and isinstance(head.__dict__["_training_trunk"], CompiledTrunk)
        assert "_training_trunk" not in dict(head.named_modules())
    assert calls == [True]


def test_a_module_without_a_head_or_compile_off_switches_nothing():
    with compiled_trunks(torch.nn.Linear(2, 2), True, "test") as none, \
            compiled_trunks(perturbed_prior("mamba"), False, "test") as off:
        assert none == 0 and off == 0


def test_the_setting_defaults_off_and_the_tiny_debug_job_keeps_it_off():
    assert TrainerSettings.from_cfg({}).compile is False
    assert TrainerSettings.from_cfg({"compile": True}).compile is True
    assert tiny_config().trainer.compile is False
