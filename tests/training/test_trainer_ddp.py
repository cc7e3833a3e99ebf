"""Two gloo processes on CPU, each rank on different data: gradients must be all-reduced."""

import torch
import torch.multiprocessing as mp

from _training_toys import (DDP_ACCUM, DDP_BATCH, DDP_STEPS, ToyRegression, ToyRegressor,
                            ddp_worker, stage_cfg, trainer_cfg)
from futurelat.training.distributed import DistInfo
from futurelat.training.trainer import Trainer
from running import free_port


def _single_process(tmp_path, batch_size):
    torch.manual_seed(0)  # = rank 0's initial weights, which DDP broadcasts
    info = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), is_main=True)
    t = Trainer(ToyRegressor(), ToyRegression(), trainer_cfg(grad_accum_steps=DDP_ACCUM),
                stage_cfg(max_steps=DDP_STEPS, batch_size=batch_size), run_dir=tmp_path,
                name="toy", dist=info)
    return {k: v.detach() for k, v in t.fit().state_dict().items()}


def test_two_rank_ddp_all_reduces_gradients(tmp_path):
    out = tmp_path / "ddp"
    out.mkdir()
    # fork (Linux) skips re-importing torch in the children: seconds on a busy 2-core machine
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(ddp_worker, args=(2, free_port(), str(out)), nprocs=2, join=True,
                       start_method=method)
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))

    # the ranks saw different data ...
    assert r0["local_losses"][0] != r1["local_losses"][0]
    # ... yet end with identical weights (rank 1 also started from different ones)
    for k, v in r0["params"].items():
        assert torch.equal(v, r1["params"][k]), k

    # Synchronised gradients == one process on the union of both ranks' batches.
    synced = _single_process(tmp_path / "union", batch_size=2 * DDP_BATCH)
    for k, v in r0["params"].items():
        torch.testing.assert_close(v, synced[k], rtol=1e-5, atol=1e-6)
    # Training on one rank's share only (no all-reduce) lands elsewhere.
    torch.manual_seed(0)
    init = ToyRegressor().state_dict()
    unsynced = _single_process(tmp_path / "half", batch_size=DDP_BATCH)
    assert not torch.allclose(r0["params"]["net.0.weight"], unsynced["net.0.weight"], atol=1e-4)
    assert not torch.allclose(r0["params"]["net.0.weight"], init["net.0.weight"], atol=1e-4)

    # The logged loss of each step is the mean over ranks of each rank's (micro-batch mean) loss.
    logged = [m["toy/loss"] for _, m in r0["logged"]]
    assert [s for s, _ in r0["logged"]] == list(range(1, DDP_STEPS + 1))
    for step in range(DDP_STEPS):
        micro = slice(step * DDP_ACCUM, (step + 1) * DDP_ACCUM)
        per_rank = [sum(r["local_losses"][micro]) / DDP_ACCUM for r in (r0, r1)]
        assert abs(logged[step] - sum(per_rank) / 2) < 1e-6 * max(1.0, abs(logged[step]))
        assert abs(logged[step] - per_rank[0]) > 1e-6
    assert r1["logged"] is None
    assert (out / "checkpoints" / "toy_final.pt").is_file()
