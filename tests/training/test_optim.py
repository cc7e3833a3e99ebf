import math

import pytest
import torch
from torch import nn

from futurelat.training.optim import build_optimizer, build_scheduler, param_groups, warmup_cosine


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.conv = nn.Conv2d(3, 8, 3)
        self.lin = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.scale = nn.Parameter(torch.ones(()))
        self.frozen = nn.Linear(8, 8)
        self.frozen.requires_grad_(False)
        self.tied = self.lin  # shared module: parameters must appear once


def test_param_groups_split_by_dim_and_skip_frozen():
    net = Net()
    groups = {g["name"]: g for g in param_groups(net, 0.1)}
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(groups["decay"]["params"]) == ids(
        [net.emb.weight, net.conv.weight, net.lin.weight])
    assert ids(groups["no_decay"]["params"]) == ids(
        [net.conv.bias, net.lin.bias, net.norm.weight, net.norm.bias, net.scale])
    assert groups["decay"]["weight_decay"] == 0.1 and groups["no_decay"]["weight_decay"] == 0.0
    n_trainable = sum(1 for p in net.parameters() if p.requires_grad)
    assert sum(len(g["params"]) for g in groups.values()) == n_trainable


def test_param_groups_no_trainable_raises():
    net = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="requires_grad"):
        param_groups(net, 0.1)


def test_build_optimizer_is_adamw_with_groups():
    opt = build_optimizer(Net(), lr=3e-4, weight_decay=0.05, betas=[0.9, 0.95])
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    assert opt.param_groups[0]["betas"] == (0.9, 0.95)
    with pytest.raises(ValueError, match="lr"):
        build_optimizer(Net(), lr=0.0, weight_decay=0.05)


def test_warmup_cosine_values():
    kw = dict(max_steps=110, warmup_steps=10, min_lr_ratio=0.1)
    assert warmup_cosine(0, **kw) == pytest.approx(0.1)
    assert warmup_cosine(4, **kw) == pytest.approx(0.5)
    assert warmup_cosine(9, **kw) == pytest.approx(1.0)
    assert warmup_cosine(10, **kw) == pytest.approx(1.0)
    assert warmup_cosine(60, **kw) == pytest.approx(0.55)  # half way: (1 + 0.1) / 2
    assert warmup_cosine(35, **kw) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert warmup_cosine(110, **kw) == pytest.approx(0.1)
    assert warmup_cosine(500, **kw) == pytest.approx(0.1)
    assert warmup_cosine(0, max_steps=4, warmup_steps=0, min_lr_ratio=0.0) == pytest.approx(1.0)


def test_scheduler_drives_optimizer_lr():
    opt = build_optimizer(nn.Linear(2, 2), lr=1.0, weight_decay=0.0)
    sched = build_scheduler(opt, max_steps=20, warmup_steps=4, min_lr_ratio=0.0)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:5] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    assert lrs[12] == pytest.approx(0.5)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))  # monotone decay after warmup
    assert lrs[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 15 / 16)))


@pytest.mark.parametrize("kw", [dict(max_steps=0, warmup_steps=0, min_lr_ratio=0.1),
                                dict(max_steps=5, warmup_steps=6, min_lr_ratio=0.1),
                                dict(max_steps=5, warmup_steps=1, min_lr_ratio=1.5)])
def test_scheduler_rejects_bad_schedule(kw):
    opt = build_optimizer(nn.Linear(2, 2), lr=1.0, weight_decay=0.0)
    with pytest.raises(ValueError):
        build_scheduler(opt, **kw)
