"""Kinetics-400 from raw video clips and the standard annotation CSVs.

Annotations: one CSV per split with the header ``label,youtube_id,time_start,time_end,split``
(the DeepMind release names them ``train.csv``, ``validate.csv``, ``test.csv``; CVDF's mirror
``train.csv``, ``val.csv``, ``test.csv``). futurelat's ``"test"`` split is held-out evaluation,
so ``configs/dataset/kinetics_400.yaml`` maps it to the Kinetics *validation* CSV.

Videos: clip files named ``{youtube_id}_{time_start:06d}_{time_end:06d}.<ext>`` (``ext`` in
:data:`VIDEO_EXTENSIONS`) anywhere under ``root``: flat, one folder per class (the label, or
the label with spaces as underscores), or deeper. ``root`` is walked once when the dataset is
built; a row whose file is not found is dropped, listed in :attr:`Kinetics.missing` and
reported in one summary warning.

Clips: ``T = context_frames + future_frames`` frames, ``step`` source frames apart (``step =
frame_stride``, or ``video fps / target_fps`` rounded per frame). Training clips start at a
uniformly random frame, drawn from torch's default RNG (seeded by the run's seed in the main
process and per worker by the ``DataLoader``); evaluation clips are fixed: centred in the
video (``eval_clip="center"``) or at its first frame (``"start"``). A video shorter than a
clip is padded by repeating its last frame (``short_videos="pad"``) or treated as unreadable
(``"skip"``). Frames are centre-cropped to a square of the shorter side, then resized to
``image_size`` (bilinear, antialiased) -- the same as resizing the shorter side and centre
cropping.

The CSV reading and the file search live in :mod:`futurelat.datasets.kinetics_index`, the clip
frame indices and the crop in :mod:`futurelat.datasets.clips`, the decoding in
:mod:`futurelat.datasets.video_io`; this module puts them together (and re-exports their names).

Unreadable videos: when a file fails to decode, the item is replaced by the next index that
decodes (wrapping around), the file is remembered (not retried), listed in
:attr:`Kinetics.unreadable` and reported in one warning (:class:`SkippedVideoWarning`).
These counts are per process: with ``DataLoader`` workers each worker keeps its own.

Items: ``{"frames": FloatTensor (T, 3, S, S) in [0, 1], "label": int, "video": str,
"index": int}`` -- ``label`` indexes the sorted class names (-1 for a CSV row without a
label; the builder takes the names from every split's CSV), ``video`` is the file's path
relative to ``root`` (posix separators) and ``index`` the dataset index of the video
returned (differs from the requested one after a replacement).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

from futurelat.config.check import merge_schema
from futurelat.config.dataset import KineticsConfig
from futurelat.datasets.clips import clip_indices, max_start, resize_center_crop
from futurelat.datasets.kinetics_index import (VIDEO_EXTENSIONS, Annotation, find_videos, pick_path,
                                               read_annotations)
from futurelat.datasets.video_io import BACKENDS, VideoDecodeError, open_video

__all__ = [
    "Annotation",
    "Kinetics",
    "SkippedVideoWarning",
    "VIDEO_EXTENSIONS",
    "build_kinetics",
    "clip_indices",
    "find_videos",
    "max_start",
    "read_annotations",
    "resize_center_crop",
]

#: Valid values of ``split`` in :func:`build_kinetics`.
SPLITS = ("train", "test")
#: Where evaluation clips start.
EVAL_CLIPS = ("center", "start")
#: What happens to a video shorter than a clip.
SHORT_VIDEOS = ("pad", "skip")


class SkippedVideoWarning(UserWarning):
    """A video listed in the annotations was skipped (missing, unreadable or too short)."""


class _TooShort(Exception):
    """Internal: a video shorter than a clip with ``short_videos="skip"``."""


# ------------------------------------------------------------------------- dataset


class Kinetics(Dataset):
    """Map-style Kinetics-style dataset of clips from raw videos (see the module docstring).

    Args:
        root: folder holding the clip files (flat, per class, or deeper).
        csv_path: the split's annotation CSV.
        num_frames: ``T`` frames per clip.
        frame_stride: source frames between clip frames; exactly one of ``frame_stride`` and
            ``target_fps`` is set.
        target_fps: clip frame rate (frames per second); the step is ``video fps / target_fps``.
        image_size: output side ``S`` in pixels.
        train: random clip starts (``True``) or fixed ones (``False``, see ``eval_clip``).
        eval_clip: ``"center"`` | ``"start"``: where evaluation clips start.
        short_videos: ``"pad"`` (repeat the last frame) | ``"skip"`` (treat as unreadable).
        classes: class names; ``label`` indexes this list (-1 for a row without a label).
            ``None``: the sorted labels of the CSV.
        backend: ``"auto"`` | ``"decord"`` | ``"pyav"``.
        decode_threads: decoder threads per video (0 = the backend's choice).

    Attributes:
        classes: class names (sorted by default).
        missing: clip file names listed in the CSV but not found under ``root``.
        unreadable: ``{video: reason}`` for files that failed to decode in this process.
        num_skipped: ``len(missing) + len(unreadable)``.

    Raises:
        FileNotFoundError: ``root`` or ``csv_path`` missing, or none of the CSV's videos found
            (names both).
        ValueError: invalid arguments, a malformed CSV, or a label not in ``classes``.
    """

    def __init__(self, root: str | os.PathLike, csv_path: str | os.PathLike, *, num_frames: int,
                 frame_stride: int | None = 1, target_fps: float | None = None, image_size: int = 256,
                 train: bool = False, eval_clip: str = "center", short_videos: str = "pad",
                 classes: Sequence[str] | None = None, backend: str = "auto", decode_threads: int = 1):
        self.root, self.csv_path = os.fspath(root), os.fspath(csv_path)
        if (frame_stride is None) == (target_fps is None):
            raise ValueError(f"set exactly one of frame_stride and target_fps; got {frame_stride} and {target_fps}")
        if frame_stride is not None and int(frame_stride) < 1:
            raise ValueError(f"frame_stride must be >= 1; got {frame_stride}")
        if target_fps is not None and not float(target_fps) > 0:
            raise ValueError(f"target_fps must be > 0; got {target_fps}")
        if int(num_frames) < 1 or int(image_size) < 1:
            raise ValueError(f"num_frames and image_size must be >= 1; got {num_frames} and {image_size}")
        for name, value, valid in (("eval_clip", eval_clip, EVAL_CLIPS), ("short_videos", short_videos, SHORT_VIDEOS),
                                   ("backend", backend, BACKENDS)):
            if value not in valid:
                raise ValueError(f"{name} must be one of {', '.join(valid)}; got {value!r}")
        self.num_frames, self.image_size, self.train = int(num_frames), int(image_size), bool(train)
        self.frame_stride = None if frame_stride is None else int(frame_stride)
        self.target_fps = None if target_fps is None else float(target_fps)
        self.eval_clip, self.short_videos = eval_clip, short_videos
        self.backend, self.decode_threads = backend, int(decode_threads)

        rows = read_annotations(self.csv_path)
        self.classes = sorted({r.label for r in rows} - {""}) if classes is None else list(classes)
        class_index = {c: i for i, c in enumerate(self.classes)}
        class_index[""] = -1  # unlabelled rows (a CSV without labels)
        unknown = sorted({r.label for r in rows} - set(class_index))
        if unknown:
            raise ValueError(f"{self.csv_path}: label(s) {unknown[:5]} not among the {len(self.classes)} classes")
        found = find_videos(self.root)
        self.videos: list[str] = []
        self.labels: list[int] = []
        self.missing: list[str] = []
        for r in rows:
            paths = found.get(r.stem)
            if paths:
                self.videos.append(pick_path(paths, r.label))
                self.labels.append(class_index[r.label])
            else:
                self.missing.append(f"{r.stem}.mp4")
        self.unreadable: dict[str, str] = {}
        self._bad: set[int] = set()
        if not self.videos:
            raise FileNotFoundError(
                f"none of the {len(rows)} videos listed in {self.csv_path} were found under {self.root} "
                f"(expected files like {self.missing[0]} there, flat or in per-class folders)")
        if self.missing:
            warnings.warn(f"{len(self.missing)} of {len(rows)} videos listed in {self.csv_path} are missing under "
                          f"{self.root} and are skipped (e.g. {', '.join(self.missing[:3])}; see .missing)",
                          SkippedVideoWarning, stacklevel=2)

    # -- counts ------------------------------------------------------------------------------

    @property
    def num_skipped(self) -> int:
        """Videos skipped so far: missing at build time plus unreadable at read time (this process)."""
        return len(self.missing) + len(self.unreadable)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    # -- clips -------------------------------------------------------------------------------

    def _step(self, fps: float) -> float:
        return float(self.frame_stride) if self.frame_stride is not None else fps / self.target_fps

    def _start(self, video_frames: int, step: float, video: str) -> int:
        last_start = max_start(video_frames, self.num_frames, step)
        if last_start < 0:
            if self.short_videos == "skip":
                raise _TooShort(f"{video_frames} frames < the {(self.num_frames - 1) * step + 1:g} a clip spans")
            return 0
        if self.train:
            return int(torch.randint(0, last_start + 1, ()).item())
        return last_start // 2 if self.eval_clip == "center" else 0

    def _load(self, index: int) -> dict[str, Any]:
        video = self.videos[index]
        with open_video(os.path.join(self.root, video), self.backend, self.decode_threads) as f:
            step = self._step(f.info.fps)
            start = self._start(f.info.num_frames, step, video)
            frames = f.read(clip_indices(f.info.num_frames, self.num_frames, step, start))  # (T, 3, H, W) uint8
        return {"frames": resize_center_crop(frames, self.image_size), "label": self.labels[index],
                "video": video, "index": index}

    # -- torch Dataset -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.videos)

    #: True: an unreadable video's item is replaced by the next readable one (training, evaluation).
    #: False: it raises :class:`VideoDecodeError` (the latent cache lists it as failed instead).
    replace_unreadable: bool = True

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Item ``index``, or the next readable one (see the module docstring and ``replace_unreadable``)."""
        n = len(self.videos)
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {index} out of range for Kinetics of length {n}")
        if not self.replace_unreadable:
            try:
                return self._load(i)
            except (VideoDecodeError, FileNotFoundError, _TooShort) as err:
                self._mark_bad(i, err)
                raise
        for k in range(n):
            j = (i + k) % n
            if j in self._bad:
                continue
            try:
                return self._load(j)
            except (VideoDecodeError, FileNotFoundError, _TooShort) as err:
                self._mark_bad(j, err)
        raise ValueError(f"no readable video left among the {n} found under {self.root} for {self.csv_path} "
                         f"({len(self.unreadable)} unreadable, {len(self.missing)} missing)")

    def _mark_bad(self, index: int, err: Exception) -> None:
        video = self.videos[index]
        reason = err.reason if isinstance(err, VideoDecodeError) else str(err)
        self._bad.add(index)
        self.unreadable[video] = reason
        warnings.warn(f"skipping unreadable video {os.path.join(self.root, video)}: {reason} "
                      f"({len(self.unreadable)} unreadable so far)", SkippedVideoWarning, stacklevel=3)

    def __repr__(self) -> str:
        timing = f"stride={self.frame_stride}" if self.frame_stride is not None else f"fps={self.target_fps:g}"
        return (f"Kinetics(root={self.root!r}, csv={self.csv_path!r}, videos={len(self)}, "
                f"classes={self.num_classes}, T={self.num_frames}, {timing}, size={self.image_size}, "
                f"train={self.train}, skipped={self.num_skipped})")


# ------------------------------------------------------------------------- builder


def build_kinetics(cfg: Mapping[str, Any], split: str) -> Kinetics:
    """The ``train`` or ``test`` split from ``configs/dataset/kinetics_400.yaml``.

    ``cfg`` is a ``DictConfig`` or mapping with keys of :class:`futurelat.config.dataset.KineticsConfig`
    (missing keys take its defaults; a ``csv`` mapping lists every split it sets, the others unset). ``csv.<split>`` is resolved against ``annotations_dir`` (or
    ``root`` when that is null) unless absolute. Class names are the sorted union of the
    labels of every CSV in ``csv`` that exists, so train and test agree on label indices.

    Raises:
        ValueError: unknown ``split`` or key, an unset ``dataset.root``, or an invalid value
            (the message names the key, e.g. ``dataset.frame_stride``).
        FileNotFoundError: the root, a CSV, or every video of the split missing.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown Kinetics split {split!r}; valid splits: {', '.join(SPLITS)}")
    c = _validated(cfg)
    if split not in c["csv"] or not c["csv"][split]:
        raise ValueError(f"dataset.csv.{split} is not set (the annotation CSV of the {split} split)")
    csvs = {s: _csv_path(c, s) for s in c["csv"] if c["csv"][s]}
    labels = set()
    for s, path in csvs.items():
        if s == split or os.path.isfile(path):
            labels |= {r.label for r in read_annotations(path)} - {""}
    return Kinetics(c["root"], csvs[split], num_frames=c["context_frames"] + c["future_frames"],
                    frame_stride=c["frame_stride"], target_fps=c["target_fps"], image_size=c["image_size"],
                    train=split == "train", eval_clip=c["eval_clip"], short_videos=c["short_videos"],
                    classes=sorted(labels), backend=c["backend"], decode_threads=c["decode_threads"])


def _csv_path(c: Mapping[str, Any], split: str) -> str:
    path = os.path.expanduser(str(c["csv"][split]))
    base = c["annotations_dir"] if c["annotations_dir"] is not None else c["root"]
    return path if os.path.isabs(path) else os.path.join(os.path.expanduser(str(base)), path)


def _validated(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` over the schema's defaults; unknown keys, wrong types and bad values rejected (errors
    name ``dataset.<key>``)."""
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    if isinstance(plain.get("csv"), Mapping):  # the splits it lists, not the schema's as well
        plain["csv"] = {**{s: None for s in SPLITS}, **plain["csv"]}
    c = asdict(merge_schema(KineticsConfig, plain, "dataset"))

    def need(key: str, ok: bool, what: str) -> None:
        if not ok:
            raise ValueError(f"dataset.{key} must be {what}; got {c[key]!r}")

    need("name", c["name"] == "kinetics_400", "'kinetics_400'")
    if c["root"] in (None, "", "???"):
        raise ValueError("dataset.root is not set: point it at the folder of Kinetics clips, e.g. "
                         "dataset.root=/data/kinetics400/videos (and dataset.annotations_dir at the CSVs)")
    c["root"] = os.path.expanduser(str(c["root"]))
    for key in ("context_frames", "future_frames", "image_size"):
        need(key, c[key] >= 1, "an int >= 1")
    need("channels", c["channels"] == 3, "3 (RGB videos)")
    if (c["frame_stride"] is None) == (c["target_fps"] is None):
        raise ValueError(f"set exactly one of dataset.frame_stride and dataset.target_fps (the other null); "
                         f"got {c['frame_stride']!r} and {c['target_fps']!r}")
    need("frame_stride", c["frame_stride"] is None or c["frame_stride"] >= 1, "null or an int >= 1")
    need("target_fps", c["target_fps"] is None or c["target_fps"] > 0, "null or a number > 0")
    need("eval_clip", c["eval_clip"] in EVAL_CLIPS, " or ".join(EVAL_CLIPS))
    need("short_videos", c["short_videos"] in SHORT_VIDEOS, " or ".join(SHORT_VIDEOS))
    need("backend", c["backend"] in BACKENDS, " | ".join(BACKENDS))
    need("decode_threads", c["decode_threads"] >= 0, "an int >= 0")
    return c
