"""Sweeps through Hydra's submitit launcher and Optuna sweeper, shrunk to seconds on this machine."""

from __future__ import annotations

import json
import math
import os

import yaml
from hydra import compose, initialize_config_dir

from composing import CONFIG_DIR, ROOT, TINY
from running import run_main

#: One intra-op thread per job, as tests/conftest.py sets in-process: jobs that run side by side on
#: 2 cores with 2 OpenMP threads each spin-wait for seconds per tiny step.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def _hydra_config(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="main", overrides=overrides, return_hydra_config=True)


def test_cluster_configs_compose():
    slurm = _hydra_config(["hydra/launcher=slurm", "hydra.launcher.nodes=2"]).hydra.launcher
    assert slurm._target_.endswith("SlurmLauncher")
    assert (slurm.nodes, slurm.gpus_per_node, slurm.tasks_per_node) == (2, 8, 8)  # one task per GPU
    assert slurm.signal_delay_s > 0 and slurm.max_num_timeout > 0
    assert _hydra_config(["hydra/launcher=local"]).hydra.launcher._target_.endswith("LocalLauncher")
    search = _hydra_config(["hparams_search=mmnist_optuna"])
    assert search.optimized_metric == "test/mse" and search.hydra.sweeper.direction == "minimize"
    assert _hydra_config(["hparams_search=vjepa2_optuna"]).optimized_metric == "test/l1"


def test_submitit_local_sweep_runs_each_job_in_its_own_process(tmp_path):
    result = run_main(["-m", "hydra/launcher=local", "hydra.launcher.timeout_min=5", *TINY,
                       "head.params.d_model=16,32", f"hydra.sweep.dir={tmp_path}"], cwd=ROOT, env=ONE_THREAD, timeout=400)
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
    assert set(best["best_params"]) == {"trainer.predictor.lr"}  # TINY fixes the head's width and depth
