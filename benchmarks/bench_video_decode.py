"""Clip decoding speed of the decord and PyAV backends (futurelat/datasets/video_io.py).

    python benchmarks/bench_video_decode.py                      # writes Kinetics-like test videos
    python benchmarks/bench_video_decode.py --folder DIR         # or decodes the videos in DIR

Each backend reads the same clips (``--clip`` frames ``--stride`` apart at a random start, one
clip per open, as the Kinetics dataset does) and, per decoder thread setting, prints clips/s
and returned frames/s as a markdown table. The default test videos mimic Kinetics clips: 10 s
at 30 fps, 340x256, H.264 (libx264, crf 23, ffmpeg's default key frame interval of 250 frames;
``--gop 250 30`` compares denser key frames, which favour decord's seeking).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from futurelat.datasets.kinetics import VIDEO_EXTENSIONS, clip_indices, resize_center_crop
from futurelat.datasets.toy_videos import render_clip
from futurelat.datasets.video_io import decord_available, open_video, write_video


def render_test_clips(count: int, frames: int, width: int, height: int) -> list[np.ndarray]:
    """``count`` clips of moving shapes on a textured background: ``(frames, height, width, 3)`` uint8."""
    side = max(width, height)
    classes = ("bouncing ball", "rotating bar", "sliding square")
    clips = [render_clip(classes[i % 3], np.random.default_rng(i), frames=frames, size=side + side % 2)
             for i in range(count)]
    return [clip[:, :height, :width] for clip in clips]


def write_test_videos(folder: Path, clips: list[np.ndarray], fps: float, gop: int | None = None) -> list[Path]:
    """H.264 (libx264, crf 23) mp4s of ``clips`` in ``folder``, a key frame every ``gop`` frames
    (``None``: libx264's 250)."""
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(write_video(folder / f"video{i}.mp4", clip, fps=fps, crf=23, gop=gop)) for i, clip in enumerate(clips)]


def bench(paths: list[Path], backend: str, threads: int, clip: int, stride: int, clips: int, size: int | None,
          seed: int = 0) -> tuple[float, float]:
    """Seconds per clip and frames per clip returned, over ``clips`` clips (after one warm-up clip)."""
    rng = np.random.default_rng(seed)
    times = []
    for k in range(clips + 1):
        path = paths[k % len(paths)]
        start = time.perf_counter()
        with open_video(path, backend, threads) as video:
            n = video.info.num_frames
            first = int(rng.integers(0, max(1, n - (clip - 1) * stride)))
            frames = video.read(clip_indices(n, clip, stride, first))
        if size:
            frames = resize_center_crop(frames, size)
        if k:
            times.append(time.perf_counter() - start)
    return float(np.mean(times)), float(clip)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="decode the videos in this folder instead of test videos")
    parser.add_argument("--num-videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=300, help="frames per test video")
    parser.add_argument("--width", type=int, default=340)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--gop", type=int, nargs="+", default=[None],
                        help="key frame intervals of the test videos, one table block each (default: libx264's 250)")
    parser.add_argument("--clip", type=int, default=16, help="frames per clip")
    parser.add_argument("--stride", type=int, default=4, help="source frames between clip frames")
    parser.add_argument("--clips", type=int, default=40, help="clips timed per backend")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 0], help="decoder threads (0 = auto)")
    parser.add_argument("--resize", type=int, default=None, help="also centre-crop + resize to this side")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        if args.folder:
            paths = sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
            if not paths:
                raise SystemExit(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) under {args.folder}")
            sets = {"as stored": paths}
            print(f"{len(paths)} videos under {args.folder}")
        else:
            start = time.perf_counter()
            clips = render_test_clips(args.num_videos, args.frames, args.width, args.height)
            sets = {str(gop or "250 (default)"): write_test_videos(Path(tmp) / f"gop{gop}", clips, args.fps, gop)
                    for gop in args.gop}
            print(f"{args.num_videos} test videos, {args.frames} frames {args.width}x{args.height} "
                  f"at {args.fps:g} fps, "
                  f"H.264 crf 23 (rendered and written in {time.perf_counter() - start:.1f} s)")
        print(f"clips of {args.clip} frames, stride {args.stride}, random start; {args.clips} clips per row; "
              f"{os.cpu_count()} CPU cores" + (f"; + resize to {args.resize}" if args.resize else "") + "\n")
        print("| key frame every | backend | decoder threads | clips/s | frames/s | ms/clip |")
        print("|---|---|---|---|---|---|")
        backends = (["decord"] if decord_available() else []) + ["pyav"]
        for gop, paths in sets.items():
            for backend in backends:
                for threads in args.threads:
                    sec, frames = bench(paths, backend, threads, args.clip, args.stride, args.clips, args.resize)
                    print(f"| {gop} | {backend} | {threads or 'auto'} | {1 / sec:.1f} | {frames / sec:.0f} "
                          f"| {sec * 1e3:.1f} |", flush=True)

if __name__ == "__main__":
    main()
