"""``PRECISIONS`` and ``autocast``: the one map of precision names the trainer and the cache command use."""

from __future__ import annotations

import contextlib

import pytest
import torch

from futurelat.utils.precision import PRECISIONS, autocast


def test_the_map():
    assert PRECISIONS == {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def test_trainer_and_cache_read_the_same_map():
    from futurelat import cache
    from futurelat.config import trainer

    assert trainer.PRECISIONS is PRECISIONS and cache.PRECISIONS is PRECISIONS


def test_fp32_is_no_autocast_and_bf16_computes_in_bfloat16_on_cpu():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    assert isinstance(autocast("cpu", "fp32"), contextlib.nullcontext)
    with autocast("cpu", "fp32"):
        assert (a @ b).dtype == torch.float32
    with autocast(torch.device("cpu"), "bf16"):
        assert (a @ b).dtype == torch.bfloat16
    assert (a @ b).dtype == torch.float32


def test_unknown_precision_lists_the_valid_ones():
    with pytest.raises(KeyError, match="unknown precision 'fp8'; valid: fp32, bf16, fp16"):
        autocast("cpu", "fp8")
