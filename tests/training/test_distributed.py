import pytest
import torch

from futurelat.training import distributed
from futurelat.training.distributed import (DistInfo, all_gather_objects, all_reduce_mean,
                                            barrier, cleanup_distributed, init_distributed,
                                            resolve_device)


@pytest.fixture
def fresh(monkeypatch):
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(distributed, "_cached", None)
    yield
    cleanup_distributed()


def test_single_process_without_torchrun(fresh):
    info = init_distributed("cpu")
    assert info == DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"),
                            is_main=True)
    assert not info.distributed
    assert init_distributed("auto") is info  # idempotent
    assert not torch.distributed.is_initialized()
    t = torch.tensor([2.0, 4.0])
    assert torch.equal(all_reduce_mean(t, info), torch.tensor([2.0, 4.0]))
    assert all_gather_objects({"a": 1}, info) == [{"a": 1}]
    barrier(info)  # no-op


def test_bad_env_and_device(fresh, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(ValueError, match="RANK=5"):
        init_distributed("cpu")
    with pytest.raises(ValueError, match="trainer.device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            resolve_device("cuda")
        assert resolve_device("auto") == torch.device("cpu")


def test_one_gpu_per_task_maps_every_local_rank_to_a_visible_gpu(monkeypatch):
    """SLURM --gpus-per-task=1 leaves each task one visible GPU: local rank 3 must take cuda:0, not cuda:3."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda", local_rank=3) == torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    assert resolve_device("auto", local_rank=3) == torch.device("cuda", 3)
