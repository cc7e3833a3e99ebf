"""A job killed by SIGTERM in the middle of a stage loses at most the step it was in, and the resumed
run ends bit-identical to an uninterrupted one (``python -m futurelat.main`` as a subprocess)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import torch

from composing import ROOT, TINY
from running import CI_ENV
from futurelat.training.checkpoint import load_checkpoint

STEPS = 60  # head steps: far more than the few the test waits for, so the signal lands mid-stage
ARGS = [*TINY, f"trainer.head.max_steps={STEPS}", "trainer.ckpt_every=1000", "stages=[backbone,head]"]
ENV = {**os.environ, **CI_ENV, "OMP_NUM_THREADS": "1"}  # one thread: no OpenMP spin-waits on a busy machine


def _main(run_dir, *extra):
    return [sys.executable, "-m", "futurelat.main", *ARGS, f"hydra.run.dir={run_dir}", *extra]


def _logged_steps(run_dir, stage: str) -> list[int]:
    log = run_dir / "train_log.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    return [r["step"] for r in map(json.loads, lines) if r["stage"] == stage]


def _stop_mid_stage(run_dir, after_step: int) -> tuple[subprocess.CompletedProcess, int]:
    """Start a run; once ``after_step`` head steps are logged, freeze it (SIGSTOP), note the last
    logged step, then SIGTERM + SIGCONT. Returns the finished process and the step noted."""
    proc = subprocess.Popen(_main(run_dir), cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 300
        while not (steps := _logged_steps(run_dir, "head")) or steps[-1] < after_step:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the run never reached the head stage"
            time.sleep(0.02)
        proc.send_signal(signal.SIGSTOP)
        noted = _logged_steps(run_dir, "head")[-1]
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGCONT)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), noted


def test_sigterm_mid_stage_then_resume_is_bit_identical(tmp_path):
    run_dir = tmp_path / "interrupted"
    stopped, noted = _stop_mid_stage(run_dir, after_step=3)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    said = stopped.stdout + stopped.stderr
    assert "stopped by SIGTERM" in said and "trainer.resume=auto" in said
    last = load_checkpoint(run_dir / "checkpoints" / "head_last.pt")
    # the step in flight when the signal came was finished, logged and saved; nothing after it
    assert noted <= last["step"] <= noted + 1 < STEPS
    assert _logged_steps(run_dir, "head")[-1] == last["step"]
    assert not (run_dir / "checkpoints" / "head_final.pt").exists()

    resumed = subprocess.run(_main(run_dir), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {run_dir / 'checkpoints' / 'head_last.pt'} at step {last['step']}" in resumed.stdout + resumed.stderr

    reference = tmp_path / "uninterrupted"
    plain = subprocess.run(_main(reference), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert plain.returncode == 0, plain.stderr[-3000:]
    for stage in ("backbone", "head"):
        got = load_checkpoint(run_dir / "checkpoints" / f"{stage}_final.pt")["model"]
        want = load_checkpoint(reference / "checkpoints" / f"{stage}_final.pt")["model"]
        assert got.keys() == want.keys()
        for k in want:
            assert torch.equal(got[k], want[k]), f"{stage}: {k}"
