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
