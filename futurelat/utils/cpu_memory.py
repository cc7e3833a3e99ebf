"""How the C allocator hands memory to CPU tensors: keep freed blocks for reuse.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves every block larger
than its mmap threshold (dynamic, at most 32 MiB on 64-bit Linux) with a fresh ``mmap`` and
returns it to the kernel on ``free``; the next step's tensor of the same size then faults in
and zeroes every 4 KiB page again. Long sequences cross that threshold (the mamba head's
training step at 16,384 tokens spends much of its time in page faults although its arithmetic
is linear in the length; ``benchmarks/bench_head_scaling.py``), and so do large batches (a VQ-VAE
tokenizer step on 64 frames of 32 x 32 codes builds ``(65,536, K)`` distance and one-hot tensors in
``vector_quantize_pytorch``). Measurements: docs/cpu_scan_study.md. Calling :func:`reuse_freed_memory`
once makes glibc serve all blocks from its heap and keep freed memory for the next step, the
glibc equivalent of the jemalloc/tcmalloc ``LD_PRELOAD`` that PyTorch's CPU performance guide
recommends.

PyTorch asks for 64-byte-aligned blocks, which a freed block of the same size cannot always
serve, so the heap grows for the first steps until it holds blocks that fit (time a training
step after two or three warm-up steps). The price is resident memory: the process keeps its peak
and some fragmentation until it exits (docs/cpu_scan_study.md). ``trainer.cpu_malloc=reuse`` selects
it (``configs/trainer/default.yaml`` does); ``system``, the schema's default and ``trainer=gpu``'s,
leaves glibc's settings alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

CPU_MALLOC_MODES = ("system", "reuse")

# mallopt parameters, from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2 ** 31 - 1


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # only glibc has it (musl, bionic do not)
        return libc
    except (OSError, AttributeError):
        return None


def reuse_freed_memory() -> bool:
    """Make glibc's ``malloc`` keep freed memory for reuse (process-wide, until exit).

    Sets ``M_MMAP_MAX = 0`` (every block from the heap, none from ``mmap``) and
    ``M_TRIM_THRESHOLD`` to 2 GiB (free memory at the top of the heap is kept up to that).

    Returns:
        True when the settings took effect; False (and nothing changed) on a C library other
        than glibc, e.g. macOS or musl.
    """
    libc = _glibc()
    if libc is None:
        log.info("cpu_malloc=reuse: not a glibc process; allocator settings left unchanged")
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX))


def configure_cpu_malloc(mode: str) -> bool:
    """Apply ``trainer.cpu_malloc``: ``"system"`` (leave glibc alone) or ``"reuse"`` (:func:`reuse_freed_memory`).

    Returns:
        Whether the allocator's settings were changed.

    Raises:
        ValueError: an unknown mode (the message names ``trainer.cpu_malloc``).
    """
    if mode not in CPU_MALLOC_MODES:
        raise ValueError(f"trainer.cpu_malloc must be one of {CPU_MALLOC_MODES}; got {mode!r}")
    return mode == "reuse" and reuse_freed_memory()
