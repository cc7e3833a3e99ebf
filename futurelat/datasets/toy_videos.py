"""A toy Kinetics-style dataset of predictable motion, for CPU demos and tests.

    python -m futurelat.datasets.toy_videos OUT_DIR --num-train 300 --num-test 60 \\
        --frames 32 --size 64 --fps 8 --seed 0 [--speed 1.5 3] [--corrupt K] [--missing K]

writes::

    OUT_DIR/annotations/train.csv       label,youtube_id,time_start,time_end,split
    OUT_DIR/annotations/validate.csv    (the held-out split, named as in the Kinetics release)
    OUT_DIR/train/<class>/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4
    OUT_DIR/val/<class>/...

Classes (:data:`CLASSES`; folder names use underscores for spaces):

- ``bouncing ball``: a disc moving at constant velocity, bouncing off the borders;
- ``sliding square``: an axis-aligned square doing the same;
- ``rotating bar``: a bar spinning at a constant angular speed about a drifting centre.

Each clip has one object (random colour, size, speed, direction) on a static background (a
colour gradient with fixed fine texture), rendered with soft (antialiased) edges. Motion is
deterministic and constant-velocity, so a predictor can beat copying the last frame. Clip
``i`` of a split depends only on ``(seed, split, i)``: the same arguments give the same
pixels. ``--corrupt K`` adds K unreadable mp4s (truncated or garbage bytes) to the train
CSV and folder; ``--missing K`` adds K train CSV rows without a file; both demonstrate the
dataset's skip path.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import string
from collections.abc import Sequence

import numpy as np

from futurelat.datasets.video_io import write_video

__all__ = ["CLASSES", "make_toy_kinetics", "render_clip", "main"]

#: Class labels (Kinetics-style: lower case, spaces).
CLASSES = ("bouncing ball", "rotating bar", "sliding square")
#: Default object speed range, px/frame at 64 px.
DEFAULT_SPEED = (1.5, 3.0)
#: Split name -> (CSV file, video folder, ``split`` column value, seed stream).
SPLIT_FILES = {"train": ("train.csv", "train", "train", 0), "test": ("validate.csv", "val", "val", 1)}
_ID_CHARS = string.ascii_letters + string.digits + "-_"


# ------------------------------------------------------------------------- rendering


def _fold(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Positions of a point bouncing elastically in ``[lo, hi]`` (``x`` unconstrained): a triangle wave."""
    span = hi - lo
    if span <= 0:
        return np.full_like(x, lo)
    u = np.mod(x - lo, 2 * span)
    return lo + span - np.abs(u - span)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Static ``(S, S, 3)`` float background in [0, 1]: a dim two-colour gradient plus fine texture."""
    c0, c1 = rng.uniform(0.05, 0.4, 3), rng.uniform(0.05, 0.4, 3)
    angle = rng.uniform(0, 2 * math.pi)
    y, x = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    t = (np.cos(angle) * x + np.sin(angle) * y)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    texture = rng.uniform(-0.04, 0.04, (size, size, 1))
    return np.clip(c0 + (c1 - c0) * t[..., None] + texture, 0, 1)


def _check_speed(speed: Sequence[float]) -> None:
    if len(speed) != 2 or not 0 <= speed[0] <= speed[1]:
        raise ValueError(f"speed must be a (low, high) range in px/frame with 0 <= low <= high; got {tuple(speed)}")


def _coverage(signed_distance: np.ndarray) -> np.ndarray:
    """Soft-edged coverage in [0, 1] from a signed distance in pixels (negative inside)."""
    return np.clip(0.5 - signed_distance, 0.0, 1.0)


def render_clip(label: str, rng: np.random.Generator, frames: int = 32, size: int = 64,
                speed: tuple[float, float] = DEFAULT_SPEED) -> np.ndarray:
    """One clip of class ``label`` drawn from ``rng``.

    Speeds scale with ``size`` (``speed`` px/frame at 64 px); objects span 12-30% of the frame.
    The rotating bar's angular speed, 0.12-0.25 rad/frame at the default ``speed``, scales with
    ``speed[1] / 3``.

    Args:
        label: one of :data:`CLASSES`.
        rng: the clip's random generator (all draws come from it).
        frames: ``T`` (>= 1).
        size: frame side ``S`` in pixels (even, >= 16).
        speed: ``(low, high)`` object speed range in px/frame at 64 px, ``0 <= low <= high``.

    Returns:
        ``(T, S, S, 3)`` uint8 RGB frames.

    Raises:
        ValueError: unknown ``label``, bad sizes or a bad ``speed`` range.
    """
    if label not in CLASSES:
        raise ValueError(f"unknown toy class {label!r}; valid classes: {', '.join(CLASSES)}")
    if frames < 1 or size < 16 or size % 2:
        raise ValueError(f"frames must be >= 1 and size an even int >= 16; got frames={frames}, size={size}")
    _check_speed(speed)
    scale = size / 64.0
    background = _background(rng, size)
    hue = rng.uniform(0, 1)
    color = np.clip(np.abs(((hue * 6 + np.array([0.0, 4.0, 2.0])) % 6) - 3) - 1, 0, 1) * 0.75 + 0.25  # saturated
    t = np.arange(frames, dtype=np.float64)  # (T,)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5  # (S, S) pixel centres
    v = rng.uniform(*speed) * scale  # px/frame
    theta = rng.uniform(0, 2 * math.pi)
    vy, vx = v * math.sin(theta), v * math.cos(theta)

    # Trajectories (T,), then one frame at a time (memory O(S^2) for long, large clips).
    if label == "rotating bar":
        half_len, half_width = rng.uniform(0.18, 0.3) * size, rng.uniform(0.03, 0.05) * size
        margin = half_len + half_width
        # The centre drifts at 30% of the speed (and bounces); the bar spins.
        cy = _fold(rng.uniform(margin, size - margin) + 0.3 * vy * t, margin, size - margin)
        cx = _fold(rng.uniform(margin, size - margin) + 0.3 * vx * t, margin, size - margin)
        omega = rng.uniform(0.12, 0.25) * speed[1] / 3.0 * rng.choice([-1.0, 1.0])  # rad/frame
        phi = rng.uniform(0, math.pi) + omega * t

        def signed_distance(k: int) -> np.ndarray:
            dy, dx = yy - cy[k], xx - cx[k]
            s, c = math.sin(phi[k]), math.cos(phi[k])
            along = np.clip(dy * s + dx * c, -half_len, half_len)
            return np.hypot(dy - along * s, dx - along * c) - half_width
    else:
        radius = rng.uniform(0.1, 0.15) * size
        cy = _fold(rng.uniform(radius, size - radius) + vy * t, radius, size - radius)
        cx = _fold(rng.uniform(radius, size - radius) + vx * t, radius, size - radius)

        def signed_distance(k: int) -> np.ndarray:
            if label == "bouncing ball":
                return np.hypot(yy - cy[k], xx - cx[k]) - radius
            return np.maximum(np.abs(yy - cy[k]), np.abs(xx - cx[k])) - radius  # square, half-side = radius

    video = np.empty((frames, size, size, 3), dtype=np.uint8)
    for k in range(frames):
        alpha = _coverage(signed_distance(k))[..., None]  # (S, S, 1)
        video[k] = np.round((background * (1 - alpha) + color * alpha) * 255)
    return video


# ------------------------------------------------------------------------- folder


def _youtube_ids(rng: np.random.Generator, count: int, taken: set[str]) -> list[str]:
    """``count`` fake 11-character YouTube ids, distinct from each other and from ``taken``."""
    out: list[str] = []
    while len(out) < count:
        new = "".join(_ID_CHARS[i] for i in rng.integers(0, len(_ID_CHARS), 11))
        if new not in taken:
            taken.add(new)
            out.append(new)
    return out


def make_toy_kinetics(out_dir: str | os.PathLike, *, num_train: int = 300, num_test: int = 60, frames: int = 32,
                      size: int = 64, fps: float = 8.0, seed: int = 0, corrupt: int = 0,
                      missing: int = 0, speed: tuple[float, float] = DEFAULT_SPEED) -> dict[str, int]:
    """Write the toy dataset described in the module docstring into ``out_dir``.

    Classes take turns (clip ``i`` has class ``CLASSES[i % 3]``); ``speed`` is passed to
    :func:`render_clip`. Existing files are overwritten.

    Returns:
        counts: ``{"train": ..., "test": ..., "corrupt": ..., "missing": ...}`` (rows per CSV
        include the corrupt and missing ones for train).

    Raises:
        ValueError: negative counts, ``frames < 1``, odd ``size`` or ``size < 16``, ``fps <= 0``,
            a bad ``speed`` range.
    """
    if min(num_train, num_test, corrupt, missing) < 0 or num_train + num_test < 1:
        raise ValueError(f"counts must be >= 0 with at least one clip; got num_train={num_train}, "
                         f"num_test={num_test}, corrupt={corrupt}, missing={missing}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0; got {fps}")
    _check_speed(speed)
    out_dir = os.fspath(out_dir)
    os.makedirs(os.path.join(out_dir, "annotations"), exist_ok=True)
    duration = max(1, math.ceil(frames / fps))  # seconds, for time_end
    taken: set[str] = set()
    id_rng = np.random.default_rng([seed, 99])
    counts = {"train": num_train, "test": num_test, "corrupt": corrupt if num_train else 0,
              "missing": missing if num_train else 0}
    for split, count in (("train", num_train), ("test", num_test)):
        csv_name, folder, split_value, stream = SPLIT_FILES[split]
        extra = counts["corrupt"] + counts["missing"] if split == "train" else 0
        rows = []
        for i, yid in enumerate(_youtube_ids(id_rng, count + extra, taken)):
            rng = np.random.default_rng([seed, stream, i])
            label = CLASSES[i % len(CLASSES)]
            start = int(rng.integers(0, 300))
            rows.append((label, yid, start, start + duration, split_value))
            name = f"{yid}_{start:06d}_{start + duration:06d}.mp4"
            path = os.path.join(out_dir, folder, label.replace(" ", "_"), name)
            if i < count:
                write_video(path, render_clip(label, rng, frames, size, speed), fps)
            elif i < count + counts["corrupt"]:
                _write_corrupt(path, rng, i - count, frames, size, fps)
            # else: a row without a file (missing)
        with open(os.path.join(out_dir, "annotations", csv_name), "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
            writer.writerows(rows)
    return counts


def _write_corrupt(path: str, rng: np.random.Generator, k: int, frames: int, size: int, fps: float) -> None:
    """Even ``k``: a real clip cut to a third (its index, stored at the end, is lost); odd: random bytes."""
    if k % 2 == 0:
        write_video(path, render_clip(CLASSES[0], rng, frames, size), fps)
        with open(path, "rb") as f:
            data = f.read()
        data = data[: len(data) // 3]
    else:
        data = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with open(path, "wb") as f:
        f.write(data)


# ----------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> dict[str, int]:
    """Command line entry point (see the module docstring); returns the counts."""
    parser = argparse.ArgumentParser(prog="python -m futurelat.datasets.toy_videos",
                                     description="Write a toy Kinetics-style folder of predictable motion clips.")
    parser.add_argument("out_dir", help="output folder (created)")
    parser.add_argument("--num-train", type=int, default=300, help="train clips (default 300)")
    parser.add_argument("--num-test", type=int, default=60, help="held-out clips, validate.csv (default 60)")
    parser.add_argument("--frames", type=int, default=32, help="frames per clip (default 32)")
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels, even (default 64)")
    parser.add_argument("--fps", type=float, default=8.0, help="frame rate (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed", type=float, nargs=2, default=DEFAULT_SPEED, metavar=("LOW", "HIGH"),
                        help="object speed range in px/frame at 64 px (default %(default)s)")
    parser.add_argument("--corrupt", type=int, default=0, help="unreadable mp4s added to the train split")
    parser.add_argument("--missing", type=int, default=0, help="train CSV rows without a file")
    args = parser.parse_args(argv)
    counts = make_toy_kinetics(args.out_dir, num_train=args.num_train, num_test=args.num_test, frames=args.frames,
                               size=args.size, fps=args.fps, seed=args.seed, corrupt=args.corrupt,
                               missing=args.missing, speed=tuple(args.speed))
    print(f"wrote {counts['train']} train + {counts['test']} test clips ({args.frames} frames, "
          f"{args.size}x{args.size}, "
          f"{args.fps:g} fps; {counts['corrupt']} corrupt, {counts['missing']} missing) to {args.out_dir}\n"
          f"use it with: FUTURELAT_TOY_KINETICS={args.out_dir} python -m futurelat.main dataset=toy_kinetics")
    return counts


if __name__ == "__main__":
    main()
