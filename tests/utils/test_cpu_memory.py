"""``trainer.cpu_malloc=reuse``: freed tensors' memory is reused instead of faulted in again.

Each check runs in a fresh interpreter: the allocator settings are process-wide and permanent.
"""

import json
import subprocess
import sys

import pytest

from futurelat.utils.cpu_memory import _glibc, configure_cpu_malloc

# mallocs, fills and frees a 64 MiB block (above glibc's largest mmap threshold, 32 MiB) four
# times through the C library itself and prints the minor page faults of the last three rounds.
_PROBE = """
import ctypes, json, resource, sys
from futurelat.utils.cpu_memory import _glibc, configure_cpu_malloc
changed = configure_cpu_malloc(sys.argv[1])
libc = _glibc()
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(64 << 20)
    libc.memset(block, 1, 64 << 20)
    libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"changed": changed, "faults": sum(faults[1:])}))
"""


def _probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(_glibc() is None, reason="glibc only")
def test_reuse_stops_page_faulting_large_tensors_in_again():
    system, reuse = _probe("system"), _probe("reuse")
    pages = 3 * 64 * 2 ** 20 // 4096
    assert not system["changed"] and reuse["changed"]
    assert system["faults"] > pages // 2  # every round maps fresh pages
    assert reuse["faults"] < pages // 20  # the freed block is handed back


def test_unknown_mode_names_the_key():
    with pytest.raises(ValueError, match="trainer.cpu_malloc"):
        configure_cpu_malloc("tcmalloc")
