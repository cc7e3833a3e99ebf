import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tests use tiny models: one intra-op thread avoids OpenMP spin-wait stalls on a busy
    2-core machine (2 threads were up to 80x slower there). Subprocess tests are unaffected."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One finished tiny default job (``python -m futurelat.main`` with :data:`composing.TINY`), made
    once per session and shared by the tests that only read a run directory (end to end, curves,
    notebook). Returns its run directory. Tests must not write into it."""
    from composing import ROOT, TINY
    from running import run_main

    run_dir = tmp_path_factory.mktemp("tiny_run") / "run"
    result = run_main([*TINY, f"hydra.run.dir={run_dir}"], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir
