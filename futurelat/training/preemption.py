"""Stop signals: finish the current step, checkpoint it, exit with a status a requeue understands.

SLURM signals a job before its time limit or a pre-emption (``--signal=USR1@120``; SIGTERM at the
end of a pre-emption's grace time), submitit sends SIGUSR2 for its requeue, and torchrun forwards
SIGTERM to its workers. :class:`StopSignals` catches the signals named in ``trainer.stop_signals``
while a stage trains; the trainer ends the step it is in, writes ``{stage}_last.pt`` at that step,
then :meth:`StopSignals.forward` hands the signal to the handler that was there before (submitit's
requeue, for one) and the trainer raises :class:`TrainingInterrupted`. ``python -m futurelat.main``
turns that into exit status ``128 + signal number`` (143 for SIGTERM), the status of a process the
signal killed; ``trainer.resume: auto`` continues the run from that checkpoint when it restarts.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

#: What SLURM, submitit and torchrun send before they stop a job.
DEFAULT_STOP_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2")


def parse_signals(names: Sequence[str], key: str = "trainer.stop_signals") -> tuple[signal.Signals, ...]:
    """``["SIGTERM", "USR1", ...]`` → signals (the ``SIG`` prefix is optional, case-insensitive).

    Raises:
        ValueError: a name that is not a signal of this platform, or SIGKILL / SIGSTOP (they
            cannot be caught); the message names ``key``.
    """
    out = []
    for name in names:
        full = str(name).upper()
        full = full if full.startswith("SIG") else f"SIG{full}"
        sig = getattr(signal.Signals, full, None)
        if sig is None or sig in (signal.SIGKILL, signal.SIGSTOP):
            raise ValueError(f"{key}: {name!r} is not a signal that can be caught here; use names "
                             f"such as {list(DEFAULT_STOP_SIGNALS)}")
        out.append(sig)
    return tuple(dict.fromkeys(out))


def ignore_signals(signals: Sequence[signal.Signals], worker_id: int = 0) -> None:
    """A DataLoader ``worker_init_fn`` (with :func:`functools.partial`): the worker ignores ``signals``.

    SLURM signals every process of a job step, DataLoader workers included; a worker killed by
    SIGTERM would fail the step in flight before the trainer could save it. The workers still end
    with the main process (PyTorch's workers watch their parent).
    """
    for sig in signals:
        signal.signal(sig, signal.SIG_IGN)


class TrainingInterrupted(Exception):
    """A stop signal ended a stage after its checkpoint was written.

    Attributes:
        signum: the signal. stage: the stage name. step: the completed optimizer steps saved.
        checkpoint: the ``{stage}_last.pt`` path holding that step.
        exit_code: ``128 + signum``, the status of a process killed by the signal.
    """

    def __init__(self, signum: int, stage: str, step: int, checkpoint: Any):
        self.signum, self.stage, self.step, self.checkpoint = int(signum), stage, int(step), checkpoint
        self.exit_code = 128 + self.signum
        super().__init__(f"stage '{stage}' stopped by {signal.Signals(self.signum).name} after step {step}; "
                         f"saved {checkpoint}. Run again with trainer.resume=auto to continue.")


class StopSignals:
    """Context manager: while open, the given signals only set :attr:`signum` (the first one wins).

    Handlers can only be installed from the main thread; elsewhere this does nothing (and
    :attr:`signum` stays ``None``). The previous handlers come back on exit.
    """

    def __init__(self, signals: Sequence[signal.Signals]):
        self.signals = tuple(signals)
        self.signum: int | None = None
        self._previous: dict[signal.Signals, Any] = {}

    @property
    def requested(self) -> bool:
        """Whether a stop signal arrived."""
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            log.warning("caught %s: finishing the current step, then saving a checkpoint",
                        signal.Signals(signum).name)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def forward(self) -> None:
        """Call the handler that was installed before ours for the caught signal, if it was a Python
        function (e.g. submitit's checkpoint-and-requeue, which then exits the process itself)."""
        previous = self._previous.get(signal.Signals(self.signum)) if self.signum is not None else None
        if callable(previous):
            previous(self.signum, None)
