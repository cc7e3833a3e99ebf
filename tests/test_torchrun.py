"""``torchrun --nproc_per_node 2 -m futurelat.main`` as a user runs it (gloo on the CPU), shrunk to seconds."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from composing import TINY
from running import CI_ENV
from futurelat.training.checkpoint import load_checkpoint, state_digest


def test_torchrun_two_ranks_make_one_run(tmp_path):
    """One run directory (no ``hydra.run.dir`` given: the ranks must agree on the time stamp), one
    W&B run and one metrics.json; the ranks end with identical weights; no rank warns that DDP's
    gradient buckets and the gradients disagree in layout."""
    overrides = [o for o in TINY if not o.startswith("logger=")] + ["logger=wandb", "trainer.head.max_steps=3"]
    env = {**os.environ, **CI_ENV, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "futurelat.main", *overrides], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = [p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs
    run_dir = runs[0]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert math.isfinite(metrics["test/mse"])
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    assert (run_dir / "wandb_run_id").read_text().strip()
    for stage in ("backbone", "head"):
        ckpt = load_checkpoint(run_dir / "checkpoints" / f"{stage}_final.pt")
        assert ckpt["world_size"] == 2
        assert ckpt["rank_digests"] == [state_digest(ckpt["model"])] * 2, stage
    assert "Grad strides do not match" not in result.stderr + result.stdout
