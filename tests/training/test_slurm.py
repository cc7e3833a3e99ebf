"""Ranks from SLURM's environment: the hostlist, the port, the rule, and 2 gloo ranks that join."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from composing import ROOT
from futurelat.training.slurm import (PORT_BASE, PORT_SPAN, export_slurm_environment, first_host,
                                      master_port, slurm_environment)
from running import free_port

#: Task 1 of a 2-node srun step, 8 tasks per node, as Slurm sets it.
STEP = {"SLURM_JOB_ID": "123456", "SLURM_STEP_ID": "0", "SLURM_PROCID": "9", "SLURM_LOCALID": "1",
        "SLURM_NTASKS": "16", "SLURM_STEP_NUM_TASKS": "16", "SLURM_JOB_NODELIST": "gpu[001-002,007]",
        "SLURM_STEP_NODELIST": "gpu[001-002]"}


@pytest.mark.parametrize("nodelist, host", [
    ("localhost", "localhost"),
    ("gpu[001-003,007],cpu5", "gpu001"),
    ("gpu[007,001-003]", "gpu007"),         # Slurm's order, not the smallest number
    ("cpu5,gpu[001-003]", "cpu5"),
    ("rack[1-2]-node[08-09]", "rack1-node08"),
    ("node-[3]", "node-3"),
    ("a1.example.org,a2.example.org", "a1.example.org"),
])
def test_first_host_of_a_compressed_hostlist(nodelist, host):
    assert first_host(nodelist) == host


@pytest.mark.parametrize("nodelist, message", [("", "empty"), ("gpu[]", "empty bracket"),
                                               ("gpu[001-003", "unbalanced"), (",gpu1", "no host")])
def test_bad_hostlists_are_refused(nodelist, message):
    with pytest.raises(ValueError, match=message):
        first_host(nodelist)


def test_master_port_is_a_deterministic_unprivileged_port():
    assert master_port("123456") == master_port("123456") == PORT_BASE + 123456 % PORT_SPAN
    assert all(PORT_BASE <= master_port(str(j)) < PORT_BASE + PORT_SPAN <= 32768 for j in (0, 1, 19999, 10**9 + 7))
    with pytest.raises(ValueError, match="SLURM_JOB_ID.*MASTER_PORT"):
        master_port("")


def test_a_task_of_a_multi_task_step_gets_its_rank():
    assert slurm_environment(STEP) == {"rank": 9, "local_rank": 1, "world_size": 16, "master_addr": "gpu001",
                                       "master_port": master_port("123456")}
    given = slurm_environment({**STEP, "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"})
    assert (given["master_addr"], given["master_port"]) == ("10.0.0.1", 29500)
    # --preserve-env keeps the allocation's SLURM_NTASKS; the step's own count wins
    assert slurm_environment({**STEP, "SLURM_NTASKS": "32"})["world_size"] == 16
    legacy = {k: v for k, v in STEP.items() if not k.startswith("SLURM_STEP_")}  # SLURM_STEPID only
    assert slurm_environment({**legacy, "SLURM_STEPID": "0"})["world_size"] == 16


@pytest.mark.parametrize("case, environ", [
    ("no SLURM", {}),
    ("torchrun inside the step", {**STEP, "RANK": "0", "WORLD_SIZE": "2"}),
    # sbatch's batch script: SLURM_PROCID=0 and the allocation's 16 tasks, yet one process, no step id
    ("a batch script", {k: v for k, v in STEP.items() if not k.startswith("SLURM_STEP")} | {"SLURM_PROCID": "0"}),
    ("a one-task step", {**STEP, "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_STEP_NUM_TASKS": "1"}),
])
def test_one_process_unless_a_multi_task_step(case, environ):
    assert slurm_environment(environ) is None, case


@pytest.mark.parametrize("change, message", [
    ({"SLURM_PROCID": "16"}, "SLURM_PROCID=16"),
    ({"SLURM_LOCALID": "x"}, "SLURM_LOCALID='x'"),
    ({"SLURM_LOCALID": None}, "SLURM_LOCALID"),
    ({"SLURM_STEP_NODELIST": None, "SLURM_JOB_NODELIST": None}, "SLURM_STEP_NODELIST"),
    ({"SLURM_JOB_ID": None}, "SLURM_JOB_ID"),
    ({"MASTER_PORT": "auto"}, "MASTER_PORT='auto'"),
])
def test_a_broken_step_environment_names_the_variable(change, message):
    environ = {k: v for k, v in {**STEP, **change}.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        slurm_environment(environ)


def test_export_sets_torchruns_variables_and_keeps_a_given_master():
    environ = {**STEP, "MASTER_ADDR": "10.0.0.1"}
    export_slurm_environment(environ)
    assert {k: environ[k] for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")} == {
        "RANK": "9", "LOCAL_RANK": "1", "WORLD_SIZE": "16", "MASTER_ADDR": "10.0.0.1",
        "MASTER_PORT": str(master_port("123456"))}
    untouched = {"SLURM_PROCID": "0", "SLURM_NTASKS": "16"}  # a batch script
    assert export_slurm_environment(untouched) is None and untouched == {"SLURM_PROCID": "0", "SLURM_NTASKS": "16"}


#: One srun task: join the group from SLURM's variables alone, all-gather what each rank saw.
_TASK = """
import json, os
from futurelat.training.distributed import all_gather_objects, cleanup_distributed, init_distributed
info = init_distributed("cpu", timeout_s=60)
seen = (info.rank, info.local_rank, info.world_size, os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"])
print(json.dumps(all_gather_objects(seen, info)))
cleanup_distributed()
"""


def test_two_faked_srun_tasks_join_one_gloo_group():
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("SLURM_") and k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR")}
    step = {"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "localhost",
            "MASTER_PORT": str(free_port())}
    tasks = [subprocess.Popen([sys.executable, "-c", _TASK], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**base, **step, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r)})
             for r in (0, 1)]
    try:
        outputs = [task.communicate(timeout=120) for task in tasks]
    finally:
        for task in tasks:
            task.kill()
    for task, (out, err) in zip(tasks, outputs):
        assert task.returncode == 0, err[-3000:]
    gathered = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    port = step["MASTER_PORT"]
    assert gathered[0] == gathered[1] == [[0, 0, 2, "localhost", port], [1, 1, 2, "localhost", port]]
