"""The shot-cut detector on real frames: one continuous shot, and cuts spliced from it.

    python benchmarks/bench_shot_cuts.py ../shared/data/bigbuckbunny.mp4
    python benchmarks/bench_shot_cuts.py film.mp4 --frames 2000 --threshold 0.1

Reads the first ``--frames`` frames of the video at full size and scores every consecutive pair
(:func:`futurelat.datasets.shot_cuts.frame_differences`, the score ``dataset.shot_cuts`` thresholds)
on three sequences, each resized to 64x64:

- ``as is``: the centre square of each frame. On a one-shot clip every score is noise and motion;
  on a film, the detected cuts are listed (check them against the film).
- ``view cuts``: four equal parts, alternately the left and the right square of the frame (two
  camera set-ups of the same scene): true cuts at the three joins.
- ``jump cuts``: the centre square, the first third then the last third (the same camera, later
  in time): one true cut at the join, usually the hardest kind.

Printed per sequence: the score at each true cut, the largest score elsewhere, and the frames the
detector flags at ``--threshold`` (``dataset.shot_cut_threshold``).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import Tensor

from futurelat.datasets.shot_cuts import detect_shot_cuts, frame_differences
from futurelat.datasets.video_io import video_info, read_frames


def _square(frames: Tensor, where: str, size: int = 64) -> Tensor:
    """``(N, 3, H, W)`` uint8 → ``(N, 3, size, size)`` float in [0, 1]: the left, centre or right square."""
    h, w = frames.shape[-2:]
    side = min(h, w)
    left = {"left": 0, "centre": (w - side) // 2, "right": w - side}[where]
    return F.interpolate(frames[..., :side, left:left + side].float() / 255, size=size, mode="area")


def _report(name: str, frames: Tensor, cuts: list[int], threshold: float) -> None:
    scores = frame_differences(frames)
    at_cuts = [round(float(scores[k - 1]), 3) for k in cuts]
    others = torch.ones_like(scores, dtype=torch.bool)
    others[[k - 1 for k in cuts]] = False
    elsewhere = float(scores[others].max()) if others.any() else float("nan")
    found = detect_shot_cuts(frames, threshold)
    print(f"{name:10s} true cuts {cuts}: scores {at_cuts}; largest elsewhere {elsewhere:.3f}; "
          f"detected at {threshold}: {found[:20]}{' ...' if len(found) > 20 else ''} ({len(found)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("video")
    parser.add_argument("--frames", type=int, default=300, help="frames read from the start (default 300)")
    parser.add_argument("--threshold", type=float, default=0.1, help="dataset.shot_cut_threshold (default 0.1)")
    args = parser.parse_args()
    n = min(args.frames, video_info(args.video).num_frames)
    if n < 8:
        raise SystemExit(f"{args.video}: {n} frames; need at least 8")
    frames = torch.as_tensor(read_frames(args.video, list(range(n))))  # (N, 3, H, W) uint8
    print(f"{args.video}: {n} frames of {tuple(frames.shape[-2:])}")
    _report("as is", _square(frames, "centre"), [], args.threshold)
    q = n // 4
    views = torch.cat([_square(frames[i * q:(i + 1) * q], "left" if i % 2 == 0 else "right") for i in range(4)])
    _report("view cuts", views, [q, 2 * q, 3 * q], args.threshold)
    third = n // 3
    jump = torch.cat([_square(frames[:third], "centre"), _square(frames[n - third:], "centre")])
    _report("jump cuts", jump, [third], args.threshold)


if __name__ == "__main__":
    main()
