"""Run ``python -m futurelat.main`` as a user does, in a subprocess, for tests."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

#: What CI exports (.ci/run): no W&B upload, no Hugging Face downloads.
CI_ENV = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1"}


def run_main(args: list[str], cwd: Path, env: Mapping[str, str] | None = None,
             timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m futurelat.main *args`` in ``cwd``, with :data:`CI_ENV` over ``env`` (default:
    this process's environment); raises ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
    env = {**(os.environ if env is None else env), **CI_ENV}
    return subprocess.run([sys.executable, "-m", "futurelat.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


#: Ports tried by :func:`free_port`: below Linux's ephemeral range (32768-60999), so the OS never
#: hands one out to an outgoing connection between the probe and the rendezvous that binds it.
PORT_RANGE = (20000, 32000)


def free_port() -> int:
    """A TCP port outside the ephemeral range that was free a moment ago (a rendezvous binds it next).

    Raises:
        RuntimeError: 200 random ports of :data:`PORT_RANGE` were all taken.
    """
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(200):
        port = rng.randrange(*PORT_RANGE)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free TCP port in {PORT_RANGE}")
