import pickle
import random

import numpy as np
import pytest
import torch
from torch import nn

from futurelat.training.checkpoint import (capture_rng_state, load_checkpoint,
                                           load_module_weights, restore_rng_state,
                                           save_checkpoint)


class Arbitrary:
    """Any class instance: a weights_only loader must refuse to build it."""

    def __init__(self):
        self.x = 1


def test_save_load_weights_only_roundtrip_no_temp_left(tmp_path):
    net = nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {"model": net.state_dict(), "optimizer": opt.state_dict(), "step": 3,
             "rng": [capture_rng_state()], "config_yaml": "a: 1\n", "scaler": None}
    path = save_checkpoint(state, tmp_path / "ckpts" / "x_last.pt")
    assert sorted(p.name for p in path.parent.iterdir()) == ["x_last.pt"]
    loaded = torch.load(path, weights_only=True)  # the raw torch loader accepts it too
    assert loaded["step"] == 3
    assert torch.equal(loaded["model"]["weight"], net.weight)
    assert load_checkpoint(path)["optimizer"]["param_groups"][0]["lr"] == 1e-3


def test_failed_save_leaves_old_file_and_no_temp(tmp_path):
    path = save_checkpoint({"step": 1}, tmp_path / "c.pt")
    with pytest.raises(Exception):
        save_checkpoint({"step": 2, "bad": lambda: 0}, path)  # lambdas cannot be pickled
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    assert load_checkpoint(path)["step"] == 1


def test_pickled_object_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": Arbitrary()}, path)
    with pytest.raises(pickle.UnpicklingError, match="evil.pt"):
        load_checkpoint(path)
    with pytest.raises(pickle.UnpicklingError):
        load_module_weights(path, nn.Linear(1, 1))


def test_load_module_weights_and_errors(tmp_path):
    src, dst = nn.Linear(3, 2), nn.Linear(3, 2)
    path = save_checkpoint({"model": src.state_dict()}, tmp_path / "t.pt")
    load_module_weights(path, dst)
    assert torch.equal(src.weight, dst.weight) and torch.equal(src.bias, dst.bias)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_module_weights(tmp_path / "missing.pt", dst)
    nomodel = save_checkpoint({"step": 1}, tmp_path / "nomodel.pt")
    with pytest.raises(KeyError, match="nomodel.pt"):
        load_module_weights(nomodel, dst)
    with pytest.raises(RuntimeError, match="t.pt"):
        load_module_weights(path, nn.Linear(3, 5))


def test_rng_state_roundtrip_through_weights_only_file(tmp_path):
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    np.random.normal()  # leaves a cached gaussian in numpy's legacy state
    random.gauss(0, 1)
    path = save_checkpoint({"rng": capture_rng_state()}, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.normal(size=3), random.random(), random.gauss(0, 1))
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    restore_rng_state(load_checkpoint(path)["rng"])
    got = (torch.rand(3), np.random.normal(size=3), random.random(), random.gauss(0, 1))
    assert torch.equal(got[0], expected[0])
    assert np.array_equal(got[1], expected[1])
    assert got[2:] == expected[2:]
