"""Ranks from SLURM's own environment, for tasks started by ``srun`` (or submitit) without ``torchrun``.

With one task per GPU (``srun --ntasks-per-node 8``, or the submitit launcher's
``tasks_per_node: 8``), every task is one DDP rank. :func:`export_slurm_environment` exports
the task's SLURM rank as torchrun's variables, so that :func:`init_distributed
<futurelat.training.distributed.init_distributed>` joins the process group as under ``torchrun``:

=================  =====================================================================
torchrun           from SLURM
=================  =====================================================================
``RANK``           ``SLURM_PROCID``
``LOCAL_RANK``     ``SLURM_LOCALID``
``WORLD_SIZE``     ``SLURM_STEP_NUM_TASKS`` (else ``SLURM_NTASKS``)
``MASTER_ADDR``    the first host of ``SLURM_STEP_NODELIST`` (else ``SLURM_JOB_NODELIST``,
                   ``SLURM_NODELIST``), where task 0 runs with Slurm's block distribution
``MASTER_PORT``    kept when set, else ``10000 + SLURM_JOB_ID % 20000`` (:func:`master_port`)
=================  =====================================================================

The rule: SLURM's ranks are used only when none of torchrun's ``RANK``/``WORLD_SIZE`` is set,
the process is a task of a job STEP (``SLURM_STEP_ID``, or the older ``SLURM_STEPID``, is set:
``srun`` sets it, a plain ``sbatch`` batch script or an ``salloc`` shell does not) and that step
runs more than one task. A batch script has ``SLURM_PROCID=0`` and the allocation's
``SLURM_NTASKS`` (maybe 16) while one process runs; it stays a single process.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, MutableMapping

log = logging.getLogger(__name__)

#: torchrun's variables: when any is set, SLURM's are not read.
TORCHRUN_KEYS = ("RANK", "WORLD_SIZE")
#: Node-list variables, most specific first.
NODELIST_KEYS = ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")
#: :func:`master_port` picks ports in ``[PORT_BASE, PORT_BASE + PORT_SPAN)``: unprivileged, below
#: Linux's ephemeral range (32768+), so that no outgoing connection already holds the port.
PORT_BASE, PORT_SPAN = 10000, 20000

_BRACKET = re.compile(r"\[([^\]]*)\]")


def first_host(nodelist: str) -> str:
    """The first host of a Slurm hostlist: ``"gpu[001-003,007],cpu5"`` → ``"gpu001"``.

    Slurm compresses node lists as comma-separated names with bracketed ranges and lists of
    zero-padded numbers; several bracket groups in a name (``"r[1-2]n[08-09]"``) vary together
    as a cartesian product, whose first name uses each group's first number.

    Raises:
        ValueError: an empty list, or an unbalanced or empty bracket.
    """
    if not nodelist.strip():
        raise ValueError("empty Slurm node list")

    def first(match: re.Match) -> str:
        number = match.group(1).split(",")[0].split("-")[0].strip()
        if not number:
            raise ValueError(f"empty bracket in Slurm node list {nodelist!r}")
        return number

    expanded = _BRACKET.sub(first, nodelist)
    if "[" in expanded or "]" in expanded:
        raise ValueError(f"unbalanced bracket in Slurm node list {nodelist!r}")
    host = expanded.split(",")[0].strip()
    if not host:
        raise ValueError(f"no host name at the start of Slurm node list {nodelist!r}")
    return host


def master_port(job_id: str) -> int:
    """A rendezvous port derived from the job id, the same in every task of the job.

    Two jobs whose ids are equal modulo ``PORT_SPAN`` get the same port; two DDP steps of one job
    on one node too: set ``MASTER_PORT`` yourself there.

    Raises:
        ValueError: ``job_id`` is not an integer (the message names ``SLURM_JOB_ID``).
    """
    try:
        return PORT_BASE + int(job_id) % PORT_SPAN
    except ValueError as err:
        raise ValueError(f"SLURM_JOB_ID={job_id!r} is not an integer; set MASTER_PORT instead") from err


def _int(environ: Mapping[str, str], key: str) -> int:
    try:
        return int(environ[key])
    except KeyError as err:
        raise ValueError(f"SLURM step without {key} in its environment") from err
    except ValueError as err:
        raise ValueError(f"environment variable {key}={environ[key]!r} is not an integer") from err


def slurm_environment(environ: Mapping[str, str]) -> dict[str, int | str] | None:
    """This task's place in a multi-task SLURM step, or ``None`` (see the module's rule).

    Returns:
        ``{"rank", "local_rank", "world_size", "master_addr", "master_port"}``; ``None`` when
        torchrun's variables are set, outside a job step, or for a one-task step.

    Raises:
        ValueError: a step variable that is missing or not an integer, no node list, or a
            ``SLURM_PROCID`` outside ``[0, world_size)``; each names the variable.
    """
    if any(key in environ for key in TORCHRUN_KEYS):
        return None
    if "SLURM_STEP_ID" not in environ and "SLURM_STEPID" not in environ:
        return None
    world_size = _int(environ, "SLURM_STEP_NUM_TASKS" if "SLURM_STEP_NUM_TASKS" in environ else "SLURM_NTASKS")
    if world_size <= 1:
        return None
    rank, local_rank = _int(environ, "SLURM_PROCID"), _int(environ, "SLURM_LOCALID")
    if not 0 <= rank < world_size:
        raise ValueError(f"SLURM_PROCID={rank} is outside [0, {world_size}) (the step's task count)")
    nodelist = next((environ[key] for key in NODELIST_KEYS if environ.get(key)), None)
    if nodelist is None:
        raise ValueError(f"SLURM step without a node list: none of {', '.join(NODELIST_KEYS)} is set")
    port = _int(environ, "MASTER_PORT") if environ.get("MASTER_PORT") else master_port(
        environ.get("SLURM_JOB_ID", environ.get("SLURM_JOBID", "")))
    return {"rank": rank, "local_rank": local_rank, "world_size": world_size,
            "master_addr": environ.get("MASTER_ADDR") or first_host(nodelist), "master_port": port}


def export_slurm_environment(environ: MutableMapping[str, str] = os.environ) -> dict[str, int | str] | None:
    """Export :func:`slurm_environment` as torchrun's variables (``MASTER_*`` only where unset).

    Logs where this process's rank comes from (torchrun, SLURM, or a single process).

    Returns:
        what :func:`slurm_environment` returned.

    Raises:
        ValueError: as :func:`slurm_environment`.
    """
    slurm = slurm_environment(environ)
    if slurm is None:
        source = "torchrun" if any(key in environ for key in TORCHRUN_KEYS) else "none (a single process)"
        log.info("distributed environment: %s", source)
        return None
    environ["RANK"], environ["LOCAL_RANK"] = str(slurm["rank"]), str(slurm["local_rank"])
    environ["WORLD_SIZE"] = str(slurm["world_size"])
    environ.setdefault("MASTER_ADDR", str(slurm["master_addr"]))
    environ.setdefault("MASTER_PORT", str(slurm["master_port"]))
    log.info("distributed environment: SLURM step %s, rank %d of %d (local rank %d), rendezvous %s:%s",
             environ.get("SLURM_STEP_ID", environ.get("SLURM_STEPID")), slurm["rank"], slurm["world_size"],
             slurm["local_rank"], environ["MASTER_ADDR"], environ["MASTER_PORT"])
    return slurm
