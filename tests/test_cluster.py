"""Sweeps through Hydra's submitit launcher and Optuna sweeper, shrunk to seconds on this machine."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from composing import ROOT, TINY, compose_config
from running import CI_ENV, run_main

#: One intra-op thread per job, as tests/conftest.py sets in-process: jobs that run side by side on
#: 2 cores with 2 OpenMP threads each spin-wait for seconds per tiny step.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_cluster_configs_compose():
    slurm = compose_config(["hydra/launcher=slurm", "hydra.launcher.nodes=2"], return_hydra_config=True)
    launcher = slurm.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (2, 8, 8)  # one task per GPU
    assert launcher.signal_delay_s > 0 and launcher.max_num_timeout > 0
    local = compose_config(["hydra/launcher=local"], return_hydra_config=True)
    assert local.hydra.launcher._target_.endswith("LocalLauncher")
    search = compose_config(["hparams_search=mmnist_optuna"], return_hydra_config=True)
    assert search.optimized_metric == "test/mse" and search.hydra.sweeper.direction == "minimize"
    assert compose_config(["hparams_search=vjepa2_optuna"]).optimized_metric == "test/l1"


def test_submitit_local_sweep_runs_each_job_in_its_own_process(tmp_path):
    result = run_main(["-m", "hydra/launcher=local", "hydra.launcher.timeout_min=5", *TINY, "head.params.d_model=16,32",
                       f"hydra.sweep.dir={tmp_path}"], cwd=ROOT, env=ONE_THREAD, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    for job, width in (("0", 16), ("1", 32)):
        assert math.isfinite(json.loads((tmp_path / job / "metrics.json").read_text())["test/mse"])
        assert yaml.safe_load((tmp_path / job / "config.yaml").read_text())["head"]["params"]["d_model"] == width
    # submitit's own folder under the sweep dir: one pickle and log set per job
    assert len(list((tmp_path / ".submitit").glob("*/*_result.pkl"))) == 2


def test_optuna_search_minimises_the_returned_metric(tmp_path):
    result = run_main(["-m", "hparams_search=mmnist_optuna", *TINY, "hydra.sweeper.n_trials=2",
                       f"hydra.sweep.dir={tmp_path}"], cwd=ROOT, env=ONE_THREAD, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    best = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    trials = [json.loads((tmp_path / job / "metrics.json").read_text())["test/mse"] for job in ("0", "1")]
    assert math.isfinite(best["best_value"]) and best["best_value"] == min(trials)
    assert set(best["best_params"]) == {"trainer.head.lr"}  # TINY fixes the head's width and depth


def _wait_for(find, what: str, timeout_s: float):
    """Poll ``find()`` until it returns something; bounded by ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while (found := find()) is None:
        assert time.monotonic() < deadline, f"no {what} after {timeout_s} s"
        time.sleep(0.5)
    return found


@pytest.mark.slow
def test_a_requeued_job_runs_again_in_its_job_dir(tmp_path):
    """SIGUSR2, as Slurm sends it before a time limit, makes submitit requeue the job; the requeued
    job must write to the same job dir (where trainer.resume finds its checkpoint), although the
    sweep dir holds ``${now:}``, with microseconds: it is resolved once, at submission."""
    out = tmp_path / "sweep.log"
    args = ["-m", "hydra/launcher=local", *TINY, "trainer.backbone.max_steps=600",
            f"hydra.sweep.dir={tmp_path}/" + "${now:%H-%M-%S-%f}"]
    with out.open("w") as log:
        sweep = subprocess.Popen([sys.executable, "-m", "futurelat.main", *args], cwd=ROOT, stdout=log,
                                 stderr=subprocess.STDOUT, env={**ONE_THREAD, **CI_ENV})
    try:
        main_log = _wait_for(lambda: next((p for p in tmp_path.glob("*/0/main.log")
                                           if "backbone step 5/" in p.read_text()), None), "training", 300)
        controller = int(next((main_log.parents[1] / ".submitit").glob("[0-9]*")).name)  # job id = its pid
        task = _wait_for(lambda: Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
                         or None, "submitit task", 10)
        os.kill(int(task[0]), signal.SIGUSR2)
        assert sweep.wait(timeout=400) == 0, out.read_text()[-3000:]
    finally:
        sweep.kill()
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [main_log.parents[1].name]
    assert main_log.read_text().count("distributed environment") == 2  # started twice, in one dir
    assert (main_log.parent / "metrics.json").exists()
