"""The video_file dataset's frame cache (futurelat/datasets/video_file.py, frame_cache.py): first
build vs cached reopen, and clips/s read from the cache.

    python benchmarks/bench_video_file.py --path shared/data/bigbuckbunny.mp4   # 132 frames, 1280x720
    python benchmarks/bench_video_file.py --path film.mp4 --size 128 --channels 3

First build: decode every frame (one PyAV pass), scale, grayscale, crop, write the uint8 cache, in
a fresh cache folder each repeat. Cached reopen: building the dataset again (stat + memory map, no
decoding). Clips/s: random training clips (``T`` frames, float in [0, 1]) read from the cache by
``dataset[i]``, and as batches of a ``DataLoader`` (no workers). Prints a markdown table; medians
over ``--repeats``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from futurelat.datasets.video_file import build_video_file

#: The measurement clip of a checkout that has shared/ (shared/data/README.md); else pass --path.
DEFAULT = Path(__file__).resolve().parents[1] / "shared" / "data" / "bigbuckbunny.mp4"


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=str(DEFAULT), help="a video file (default: %(default)s)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--frames", type=int, default=20, help="T = context + future frames")
    parser.add_argument("--clips", type=int, default=2000, help="clips read per timing")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    args = parser.parse_args()
    if not os.path.isfile(args.path):
        parser.error(f"no video at {args.path}: pass --path VIDEO")
    torch.set_num_threads(args.threads)
    half = args.frames // 2
    cfg = {"path": args.path, "image_size": args.size, "channels": args.channels, "context_frames": half,
           "future_frames": args.frames - half, "test_fraction": 0.0}

    builds, reopens, item_rates, batch_rates = [], [], [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            seconds, ds = timed(lambda: build_video_file({**cfg, "cache_dir": cache}, "train"))
            builds.append(seconds)
            reopens.append(timed(lambda: build_video_file({**cfg, "cache_dir": cache}, "train"))[0])
            seconds, _ = timed(lambda: [ds[i % len(ds)] for i in range(args.clips)])
            item_rates.append(args.clips / seconds)
            loader = DataLoader(ds, batch_size=args.batch_size, sampler=torch.randint(0, len(ds), (args.clips,)).tolist())
            seconds, _ = timed(lambda: [b["frames"].shape for b in loader])
            batch_rates.append(args.clips / seconds)
            cache_bytes = sum(f.stat().st_size for f in Path(cache).iterdir())
    frames = ds.frames[0]
    print(f"{args.path}: {len(frames)} frames cached as {tuple(frames.shape)} uint8 ({cache_bytes / 1e6:.2f} MB), "
          f"T={args.frames}, {os.cpu_count()} CPU cores, {args.threads} torch threads, median of {args.repeats}\n")
    print("| first build (decode + resize + write) | cached reopen | clips/s, dataset[i] | clips/s, DataLoader batches |")
    print("|---|---|---|---|")
    print(f"| {statistics.median(builds):.2f} s | {statistics.median(reopens) * 1e3:.1f} ms "
          f"| {statistics.median(item_rates):,.0f} | {statistics.median(batch_rates):,.0f} |")


if __name__ == "__main__":
    main()
