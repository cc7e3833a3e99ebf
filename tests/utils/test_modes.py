"""``eval_mode`` / ``eval_mode_on``: eval mode for a block, every submodule's own mode restored after."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from futurelat.utils.modes import eval_mode, eval_mode_on


def _model() -> nn.Module:
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)))
    model.train()
    model[2].eval()  # a frozen part inside a training model: mixed modes
    return model


def _modes(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


def test_eval_inside_and_mixed_modes_restored_after():
    model = _model()
    before = _modes(model)
    with eval_mode(model):
        assert not any(_modes(model))
        x = torch.ones(3, 2)
        assert torch.equal(model(x), model(x))  # dropout off
    assert _modes(model) == before == [True, True, True, False, False, False]


def test_nested_blocks_and_exceptions_restore_the_modes():
    model, other = _model(), _model()
    before = _modes(model)
    with pytest.raises(RuntimeError, match="boom"):
        with eval_mode(model):
            with eval_mode(model[2], other):
                assert not any(_modes(other))
            assert not any(_modes(model)) and _modes(other) == before
            raise RuntimeError("boom")
    assert _modes(model) == before and _modes(other) == before


def test_eval_mode_on_moves_modules_and_leaves_other_callables_alone():
    model = _model()
    with eval_mode_on(model, "cpu"):
        assert not any(_modes(model))
    assert _modes(model) == [True, True, True, False, False, False]
    with eval_mode_on(len, "cpu"):  # a baseline function: nothing to move or switch
        pass
