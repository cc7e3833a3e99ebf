"""Seconds of ``VQVAE.nearest_codes`` by score-block size, on the default job's latents.

    python benchmarks/bench_nearest_codes.py                        # 4 clips x 20 frames x 32x32 tokens, D = 8, K = 128
    python benchmarks/bench_nearest_codes.py --codes 512 --threads 1

:meth:`futurelat.models.backbones.vqvae.VQVAE.nearest_codes` fills one ``(rows, K)`` float32 score
block at a time, at most :data:`~futurelat.models.backbones.vqvae.SEARCH_BLOCK_BYTES` of it. This
script sets that cap to each ``--block-bytes`` in turn (``0``: no cap, one block as large as
``max_search_bytes`` allows) and prints the median seconds of ``--repeats`` searches over random
latents of the default job's batch (``--batch`` clips of ``--frames`` frames of ``--tokens`` tokens of
``--dim`` channels), and whether the codes equal those of the first block size (they must: blocking
changes only the memory traffic). Speed figures belong in docs/results.md, never in a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from futurelat.models.backbones import vqvae as vqvae_module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4, help="clips")
    parser.add_argument("--frames", type=int, default=20, help="frames per clip")
    parser.add_argument("--tokens", type=int, default=1024, help="tokens per frame (32x32)")
    parser.add_argument("--dim", type=int, default=8, help="D, the codebook vector size")
    parser.add_argument("--codes", type=int, default=128, help="K, the codebook size")
    parser.add_argument("--block-bytes", type=int, nargs="+", default=[0, 2**22, 2**20, 2**18, 2**16],
                        help="caps on one score block in bytes (0: none)")
    parser.add_argument("--repeats", type=int, default=20, help="timed searches per block size")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = vqvae_module.VQVAE(in_channels=1, latent_dim=args.dim, codebook_size=args.codes, kmeans_init=False).eval()
    latents = torch.randn(args.batch, args.frames, args.tokens, args.dim)
    rows_total = latents.numel() // args.dim
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}")
    print(f"latents {tuple(latents.shape)} ({rows_total} rows), K = {args.codes}, "
          f"max_search_bytes {model.max_search_bytes / 2**20:.0f} MiB; median of {args.repeats}\n")
    print("| block cap | rows per block | ms per search | codes equal the first row's |")
    print("|---|---|---|---|")
    reference = None
    default_cap = vqvae_module.SEARCH_BLOCK_BYTES
    try:
        for cap in args.block_bytes:
            vqvae_module.SEARCH_BLOCK_BYTES = cap if cap > 0 else model.max_search_bytes
            rows = vqvae_module.search_block_rows(rows_total, args.codes, model.max_search_bytes)
            times = []
            with torch.no_grad():
                codes = model.nearest_codes(latents)  # warm-up
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    model.nearest_codes(latents)
                    times.append(time.perf_counter() - start)
            reference = codes if reference is None else reference
            label = "none" if cap <= 0 else f"{cap / 2**20:g} MiB"
            print(f"| {label} | {rows} | {1e3 * statistics.median(times):.1f} | {bool(torch.equal(codes, reference))} |",
                  flush=True)
    finally:
        vqvae_module.SEARCH_BLOCK_BYTES = default_cap


if __name__ == "__main__":
    main()
