"""``${launch_time:FORMAT}``: the time stamp in run directory names, shared by torchrun's ranks.

Hydra's ``${now:...}`` is read by every process when it starts, so the ranks of one
``torchrun --nproc_per_node K -m futurelat.main`` job, which import torch at slightly different
times, can name K different run directories. ``launch_time`` is the start of the torchrun agent
(the parent of every rank on a node) when the process runs under torchrun (``TORCHELASTIC_RUN_ID``
is set), and the process's own start otherwise; every call in a process returns the same instant.
Ranks on other nodes have other agents: on clusters the launcher names the directory (submitit
puts each job in its sweep directory), and only rank 0 writes outputs anyway.
"""

from __future__ import annotations

import datetime
import functools
import os

from omegaconf import OmegaConf

RESOLVER = "launch_time"


def _process_start(pid: int) -> datetime.datetime | None:
    """Start time of process ``pid`` from Linux's ``/proc`` (``None`` elsewhere or on error)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        with open("/proc/stat", encoding="ascii") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return datetime.datetime.fromtimestamp(boot + start_ticks / os.sysconf("SC_CLK_TCK"))


@functools.cache
def launch_time() -> datetime.datetime:
    """When this job was launched (see the module docstring); cached for the process."""
    if os.environ.get("TORCHELASTIC_RUN_ID"):
        agent = _process_start(os.getppid())
        if agent is not None:
            return agent
    return datetime.datetime.now()


def register() -> None:
    """Register ``${launch_time:FORMAT}`` (``FORMAT`` as in :meth:`datetime.datetime.strftime`)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, lambda fmt: launch_time().strftime(fmt))
