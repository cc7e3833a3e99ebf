"""Throughput of ``python -m futurelat.cache`` (clips/s) on the toy Kinetics-style videos.

    python benchmarks/bench_cache.py                                  # vjepa2_tiny, 200 train clips, CPU
    python benchmarks/bench_cache.py --clips 1000 --batch-sizes 8 32 --workers 0 2
    python benchmarks/bench_cache.py --overrides trainer.device=cuda  # any config override

Writes the toy videos (futurelat/datasets/toy_videos.py) to a temporary folder, then caches
their train split with the backbone of ``--experiment`` (default ``vjepa2_flow_tiny``) once per
(batch size, workers) setting into a fresh cache directory, and prints a markdown table:
clips/s counts decoding, preprocessing, encoding and writing the safetensors files (the
command's own figure). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir

from futurelat.cache import run_cache
from futurelat.datasets.toy_videos import make_toy_kinetics

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", default="vjepa2_flow_tiny")
    p.add_argument("--clips", type=int, default=200, help="toy train clips to cache")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[8, 32])
    p.add_argument("--workers", nargs="+", type=int, default=[0])
    p.add_argument("--overrides", nargs="*", default=[], help="extra Hydra overrides")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        videos = Path(tmp) / "videos"
        make_toy_kinetics(videos, num_train=args.clips, num_test=1)
        print("| experiment | clips | batch size | workers | clips/s | seconds |\n|---|---|---|---|---|---|")
        for batch_size in args.batch_sizes:
            for workers in args.workers:
                out = Path(tmp) / f"cache_b{batch_size}_w{workers}"
                with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
                    cfg = compose(config_name="main", overrides=[
                        f"+experiment={args.experiment}", f"dataset.source.root={videos}", f"dataset.dir={out}",
                        "cache.splits=[train]", f"cache.batch_size={batch_size}", f"cache.num_workers={workers}",
                        "cache.progress=false", "logger=none", *args.overrides])
                summary = run_cache(cfg)["train"]
                rate = summary.written / max(summary.seconds, 1e-9)
                print(f"| {args.experiment} | {summary.written} | {batch_size} | {workers} | {rate:.1f} | "
                      f"{summary.seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
