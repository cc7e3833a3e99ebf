"""Run ``python -m futurelat.main`` as a user does, in a subprocess, for tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
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


def free_port() -> int:
    """A TCP port that was free a moment ago (the OS picks it; a rendezvous binds it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
