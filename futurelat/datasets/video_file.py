"""Fixed-length clips of one or more video files (a film, a folder of recordings), split by time.

Frames: each file is decoded once, sampled every ``frame_stride`` source frames (or at
``target_fps``), made grayscale (``channels: 1``) or kept RGB, centre-cropped to a square and
resized to ``image_size``; the result is cached as uint8 and memory-mapped on later runs
(:mod:`futurelat.datasets.frame_cache`, which says where and when a cache is rebuilt). A clip is
``T = context_frames + future_frames`` consecutive cached frames.

Split by time, per file of ``N`` cached frames: the test split holds the last
``round(test_fraction * N)`` frames; training clips end at least ``T`` frames before them (a gap
of one clip), so no test clip overlaps, or directly continues, a training clip. With
``shot_cuts`` the detected hard cuts (:mod:`futurelat.datasets.shot_cuts`) split the parts
further, and no clip straddles a cut. Training clips start at a uniformly random frame among every
valid start of every file (torch's default RNG, seeded by the run and per DataLoader worker; the
split's length is the number of non-overlapping clips that fit, one "epoch"); test clips are
fixed: every non-overlapping clip of the held-out parts, or ``test_clips`` starts spread evenly
over the valid ones.

Unreadable files (as in :mod:`futurelat.datasets.kinetics`): a file that cannot be decoded is
skipped with a :class:`SkippedVideoWarning`, listed in :attr:`VideoFileDataset.unreadable` and
counted in :attr:`VideoFileDataset.num_skipped`; when no file is readable the builder raises,
naming every file and its error.

Items: ``{"frames": FloatTensor (T, C, S, S) in [0, 1], "video": str, "start": int}``: ``video``
is the file as listed, ``start`` the source frame index of the clip's first frame.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch.utils.data import Dataset

from futurelat.config.check import merge_schema
from futurelat.config.dataset import VideoFileConfig
from futurelat.datasets.frame_cache import CachedFrames, Preprocessing, load_frames
from futurelat.datasets.kinetics import SkippedVideoWarning
from futurelat.datasets.kinetics_index import VIDEO_EXTENSIONS
from futurelat.datasets.shot_cuts import detect_shot_cuts, segments_between
from futurelat.datasets.video_io import VideoDecodeError

__all__ = ["FILM_EXTENSIONS", "SPLITS", "SkippedVideoWarning", "VideoFileDataset", "build_video_file", "list_videos"]

#: Valid values of ``split``.
SPLITS = ("train", "test")
#: Extensions searched in a folder (lower case, with the dot); a file named directly may have any.
FILM_EXTENSIONS = tuple(sorted(set(VIDEO_EXTENSIONS) | {".m4v", ".mpg", ".mpeg", ".ogv", ".ts"}))


def list_videos(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """The video files of ``paths`` (a file, a folder searched recursively for
    :data:`FILM_EXTENSIONS`, or a list of both), in order, folders' files sorted, duplicates dropped.

    Raises:
        FileNotFoundError: a path that does not exist, or a folder with no video file (names it).
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    found: list[str] = []
    for item in items:
        path = os.path.expanduser(os.fspath(item))
        if os.path.isfile(path):
            found.append(path)
        elif os.path.isdir(path):
            files = sorted(os.path.join(d, f) for d, _, names in os.walk(path) for f in names
                           if os.path.splitext(f)[1].lower() in FILM_EXTENSIONS)
            if not files:
                raise FileNotFoundError(f"no video file ({', '.join(FILM_EXTENSIONS)}) under {path}")
            found.extend(files)
        else:
            raise FileNotFoundError(f"video file or folder not found: {path}")
    return list(dict.fromkeys(found))


class VideoFileDataset(Dataset):
    """Map-style dataset of clips of video files, split by time (see the module docstring).

    Args:
        videos: video files (see :func:`list_videos` for folders).
        split: ``"train"`` (random clip starts) or ``"test"`` (fixed, held-out clips).
        num_frames: ``T`` frames per clip.
        image_size: output side ``S`` in pixels.
        channels: 1 (grayscale) or 3 (RGB).
        frame_stride: source frames between clip frames; exactly one of ``frame_stride`` and
            ``target_fps`` (clip frames per second) is set.
        test_fraction: the held-out tail of each file, in [0, 1) (0: no test split).
        test_clips: number of evenly spread test clips; ``None``: every non-overlapping one.
        shot_cuts: no clip straddles a hard cut found with ``shot_cut_threshold`` (in (0, 1]).
        cache_dir: frame cache folder (``None``: ``~/.cache/futurelat/frames``).
        decode_threads: FFmpeg decoder threads (0: its choice).

    Attributes:
        videos: the readable files; ``frames[i]`` their ``(N_i, C, S, S)`` uint8 cached frames.
        cuts: per readable file, the cached frame indices that start a new shot (empty without
            ``shot_cuts``).
        unreadable: ``{file: reason}`` of the skipped files; :attr:`num_skipped` their count.

    Raises:
        ValueError: invalid arguments, no readable file (names each file and its error), or no
            clip of ``T`` frames fits in the split (gives the frame counts).
    """

    def __init__(self, videos: Sequence[str], *, split: str, num_frames: int, image_size: int = 64,
                 channels: int = 3, frame_stride: int | None = 1, target_fps: float | None = None,
                 test_fraction: float = 0.1, test_clips: int | None = None, shot_cuts: bool = False,
                 shot_cut_threshold: float = 0.1, cache_dir: str | None = None, decode_threads: int = 0):
        _check_arguments(split, num_frames=num_frames, image_size=image_size, channels=channels,
                         frame_stride=frame_stride, target_fps=target_fps, test_fraction=test_fraction,
                         test_clips=test_clips, shot_cut_threshold=shot_cut_threshold)
        self.split, self.num_frames = split, int(num_frames)
        self.test_fraction, self.test_clips = float(test_fraction), test_clips
        self.preprocessing = Preprocessing(int(image_size), int(channels), frame_stride, target_fps)
        self.videos: list[str] = []
        self.unreadable: dict[str, str] = {}
        cached: list[CachedFrames] = []
        for path in videos:
            try:
                cached.append(load_frames(path, self.preprocessing, cache_dir, decode_threads))
                self.videos.append(os.fspath(path))
            except (VideoDecodeError, FileNotFoundError) as err:
                reason = err.reason if isinstance(err, VideoDecodeError) else str(err)
                self.unreadable[os.fspath(path)] = reason
                warnings.warn(f"skipping unreadable video {path}: {reason} ({len(self.unreadable)} unreadable so far)",
                              SkippedVideoWarning, stacklevel=2)
        if not cached:
            listed = "; ".join(f"{p}: {r}" for p, r in self.unreadable.items())
            raise ValueError(f"none of the {len(self.unreadable)} video file(s) could be decoded: {listed}")
        self._cache_paths = [c.path for c in cached]
        self.frames: list[np.ndarray] | None = [c.frames for c in cached]
        self.fps = [c.fps for c in cached]
        self.source_indices = [c.source_indices for c in cached]
        self.cuts = [detect_shot_cuts(c.frames, shot_cut_threshold) if shot_cuts else [] for c in cached]
        self._segments = self._split_segments()
        self._index_clips()

    # -- clips -------------------------------------------------------------------------------

    def split_range(self, video: int) -> tuple[int, int]:
        """Cached frames ``[lo, hi)`` of video ``video`` that this split's clips come from."""
        n = len(self.source_indices[video])
        held_out = int(round(self.test_fraction * n))
        if self.split == "test":
            return n - held_out, n
        return 0, (max(0, n - held_out - self.num_frames) if held_out else n)

    def _split_segments(self) -> list[tuple[int, int, int]]:
        """(video, lo, hi) of every cut-free part of the split at least one clip long."""
        out = []
        for v in range(len(self.videos)):
            for lo, hi in segments_between(*self.split_range(v), self.cuts[v]):
                if hi - lo >= self.num_frames:
                    out.append((v, lo, hi))
        return out

    def _index_clips(self) -> None:
        T = self.num_frames
        tiles = [(v, s) for v, lo, hi in self._segments for s in range(lo, hi - T + 1, T)]
        if not tiles:
            counts = ", ".join(f"{os.path.basename(p)}: {self.split_range(v)[1] - self.split_range(v)[0]} frames"
                               f"{f', {len(self.cuts[v])} cuts' if self.cuts[v] else ''}"
                               for v, p in enumerate(self.videos))
            raise ValueError(f"no {self.split} clip of {T} frames fits in the {self.split} part of the videos "
                             f"({counts}); use shorter clips, a higher target_fps or lower "
                             f"frame_stride, another test_fraction, or a higher shot_cut_threshold")
        starts_per_segment = np.array([hi - lo - T + 1 for _, lo, hi in self._segments])
        self._cumulative = np.cumsum(starts_per_segment)  # valid starts, over every segment
        self._length = len(tiles)
        if self.split == "test":
            if self.test_clips is None:
                self._test = tiles
            else:
                total = int(self._cumulative[-1])
                picks = np.unique(np.round(np.linspace(0, total - 1, min(self.test_clips, total))).astype(np.int64))
                self._test = [self._start(int(r)) for r in picks]
            self._length = len(self._test)

    def _start(self, r: int) -> tuple[int, int]:
        """The ``r``-th valid clip start over all segments, as (video, cached frame)."""
        k = int(np.searchsorted(self._cumulative, r, side="right"))
        before = int(self._cumulative[k - 1]) if k else 0
        v, lo, _ = self._segments[k]
        return v, lo + r - before

    def clip_starts(self) -> list[tuple[int, int]]:
        """Test split: the fixed (video, cached frame) of each item. Training: every valid start."""
        if self.split == "test":
            return list(self._test)
        return [self._start(r) for r in range(int(self._cumulative[-1]))]

    # -- torch Dataset -----------------------------------------------------------------------

    @property
    def num_skipped(self) -> int:
        """Files skipped because they could not be decoded."""
        return len(self.unreadable)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Item ``index`` (see the module docstring); a training index only sets the epoch length.

        Raises:
            IndexError: ``index`` outside ``[-len, len)``.
        """
        i = int(index) + (self._length if int(index) < 0 else 0)
        if not 0 <= i < self._length:
            raise IndexError(f"index {index} out of range for a {self.split} split of length {self._length}")
        if self.split == "test":
            v, s = self._test[i]
        else:
            v, s = self._start(int(torch.randint(0, int(self._cumulative[-1]), ()).item()))
        if self.frames is None:  # unpickled in a worker: map the caches again
            self.frames = [np.load(p, mmap_mode="r") for p in self._cache_paths]
        # (T, C, S, S) uint8 -> float32 in [0, 1], in numpy: torch's intra-op threads cost more than
        # they give on a clip this small (milliseconds on a busy machine)
        clip = np.array(self.frames[v][s:s + self.num_frames], dtype=np.float32)
        np.divide(clip, 255.0, out=clip)
        return {"frames": torch.from_numpy(clip), "video": self.videos[v], "start": int(self.source_indices[v][s])}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "frames": None}  # workers map the files themselves, nothing copied

    def __repr__(self) -> str:
        p = self.preprocessing
        timing = f"stride={p.frame_stride}" if p.frame_stride is not None else f"fps={p.target_fps:g}"
        return (f"VideoFileDataset(split={self.split!r}, videos={len(self.videos)}, clips={len(self)}, "
                f"T={self.num_frames}, {timing}, size={p.image_size}, channels={p.channels}, "
                f"cuts={sum(map(len, self.cuts))}, skipped={self.num_skipped})")


def _check_arguments(split: str, **v: Any) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    if (v["frame_stride"] is None) == (v["target_fps"] is None):
        raise ValueError(f"set exactly one of frame_stride and target_fps; got {v['frame_stride']} and {v['target_fps']}")
    checks = {"num_frames": v["num_frames"] >= 1, "image_size": v["image_size"] >= 1,
              "channels": v["channels"] in (1, 3), "frame_stride": v["frame_stride"] is None or v["frame_stride"] >= 1,
              "target_fps": v["target_fps"] is None or v["target_fps"] > 0,
              "test_fraction": 0 <= v["test_fraction"] < 1, "test_clips": v["test_clips"] is None or v["test_clips"] >= 1,
              "shot_cut_threshold": 0 < v["shot_cut_threshold"] <= 1}
    bad = [f"{k}={v[k]!r}" for k, ok in checks.items() if not ok]
    if bad:
        raise ValueError(f"invalid argument(s) {', '.join(bad)} (see VideoFileDataset)")
    if split == "test" and v["test_fraction"] == 0:
        raise ValueError("test_fraction is 0: nothing is held out for the test split")


# ------------------------------------------------------------------------- builder


def build_video_file(cfg: Mapping[str, Any], split: str, *, missing_hint: str = "") -> VideoFileDataset:
    """The ``train`` or ``test`` split from ``configs/dataset/video_file.yaml``.

    ``cfg`` is a ``DictConfig`` or mapping with keys of
    :class:`futurelat.config.dataset.VideoFileConfig` (missing keys take its defaults).
    ``missing_hint`` is added to the error for an unset or missing ``path`` (where to get it).

    Raises:
        ValueError: unknown ``split`` or key, unset ``dataset.path``, an invalid value (names the
            key, e.g. ``dataset.test_fraction``), or no readable file.
        FileNotFoundError: a ``path`` that does not exist, or a folder without videos.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown video_file split {split!r}; valid splits: {', '.join(SPLITS)}")
    c = _validated(cfg)
    hint = f" {missing_hint}" if missing_hint else ""
    if c["path"] in (None, "", "???", []):
        raise ValueError("dataset.path is not set: point it at a video file, a folder of them or a list, "
                         f"e.g. dataset.path=/path/to/film.mp4.{hint}")
    try:
        videos = list_videos(c["path"])
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err} (dataset.path).{hint}") from err
    return VideoFileDataset(videos, split=split, num_frames=c["context_frames"] + c["future_frames"],
                            image_size=c["image_size"], channels=c["channels"], frame_stride=c["frame_stride"],
                            target_fps=c["target_fps"], test_fraction=c["test_fraction"], test_clips=c["test_clips"],
                            shot_cuts=c["shot_cuts"], shot_cut_threshold=c["shot_cut_threshold"],
                            cache_dir=c["cache_dir"], decode_threads=c["decode_threads"])


def _validated(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` over the schema's defaults; unknown keys, wrong types and bad values rejected (errors
    name ``dataset.<key>``)."""
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, (DictConfig, ListConfig)) else dict(cfg)
    c = asdict(merge_schema(VideoFileConfig, plain, "dataset"))

    def need(key: str, ok: bool, what: str) -> None:
        if not ok:
            raise ValueError(f"dataset.{key} must be {what}; got {c[key]!r}")

    if c["path"] is not None and not isinstance(c["path"], (str, list)):
        need("path", False, "a file or folder path, or a list of them")
    for key in ("context_frames", "future_frames", "image_size"):
        need(key, c[key] >= 1, "an int >= 1")
    need("channels", c["channels"] in (1, 3), "1 (grayscale) or 3 (RGB)")
    if (c["frame_stride"] is None) == (c["target_fps"] is None):
        raise ValueError(f"set exactly one of dataset.frame_stride and dataset.target_fps (the other null); "
                         f"got {c['frame_stride']!r} and {c['target_fps']!r}")
    need("frame_stride", c["frame_stride"] is None or c["frame_stride"] >= 1, "null or an int >= 1")
    need("target_fps", c["target_fps"] is None or c["target_fps"] > 0, "null or a number > 0")
    need("test_fraction", 0 <= c["test_fraction"] < 1, "in [0, 1)")
    need("test_clips", c["test_clips"] is None or c["test_clips"] >= 1, "null or an int >= 1")
    need("shot_cut_threshold", 0 < c["shot_cut_threshold"] <= 1, "in (0, 1]")
    need("decode_threads", c["decode_threads"] >= 0, "an int >= 0")
    return c
