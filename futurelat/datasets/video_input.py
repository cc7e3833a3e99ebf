"""One clip of any video file or folder of frames, preprocessed as a run's dataset preprocesses its clips.

For ``python -m futurelat.predict``: a model sees frames as its training data showed them, so the clip
takes the run's ``dataset.image_size``, ``channels`` and time sampling (``frame_stride`` or
``target_fps``; datasets without them, Moving MNIST, take every frame), and its colour:

- ``channels: 1``, or a dataset of gray frames (:data:`GRAYSCALE_DATASETS`, Moving MNIST's digits
  repeated as RGB): ITU-R BT.601 luma, repeated to ``channels``;
- resizing as the dataset does: the frame cache of ``video_file`` datasets (:data:`AREA_RESIZE`)
  scales the shorter side with FFmpeg's area filter, then crops the centre square; every other
  dataset (Kinetics) crops the centre square of the full frame and resizes it bilinearly
  (:func:`futurelat.datasets.clips.resize_center_crop`).

Clip frame ``k`` is source frame ``round(start + k * step)``, ``step = frame_stride`` or ``source fps /
target_fps``. A folder holds one source frame per image (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, sorted
by name); its frame rate is given, or unknown (then ``target_fps`` and start times in seconds need one).

Shape notation: ``T`` clip frames, ``C`` channels, ``S`` the side in pixels.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from futurelat.datasets.clips import resize_center_crop
from futurelat.datasets.shot_cuts import LUMA
from futurelat.datasets.video_io import open_video, stream_frames

__all__ = ["AREA_RESIZE", "FRAME_EXTENSIONS", "GRAYSCALE_DATASETS", "InputClip", "InputPreprocessing",
           "SourceVideo", "open_source", "read_clip"]

#: Datasets whose frames are gray whatever ``channels`` says (Moving MNIST repeats gray to 3 channels).
GRAYSCALE_DATASETS = frozenset({"moving_mnist"})
#: Datasets that resize with the frame cache's FFmpeg area filter (:mod:`futurelat.datasets.frame_cache`).
AREA_RESIZE = frozenset({"video_file", "steamboat_willie"})
#: Image files read from a folder of frames (lower case).
FRAME_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png")


@dataclass(frozen=True)
class InputPreprocessing:
    """How a run's dataset makes its frames: side ``image_size``, ``channels`` (1 or 3), ``grayscale``
    (luma, repeated to ``channels``), exactly one of ``frame_stride`` and ``target_fps``, and ``resize``
    (``"area"`` or ``"bilinear"``, see the module docstring)."""

    image_size: int
    channels: int
    grayscale: bool
    frame_stride: int | None = 1
    target_fps: float | None = None
    resize: str = "bilinear"

    @classmethod
    def from_dataset(cls, dataset: Mapping[str, Any]) -> InputPreprocessing:
        """The preprocessing of a run's ``dataset`` config (a latent cache: its ``source``)."""
        d = dataset.get("source") or dataset
        stride, fps = d.get("frame_stride", 1), d.get("target_fps")
        return cls(image_size=int(d["image_size"]), channels=int(d["channels"]),
                   grayscale=int(d["channels"]) == 1 or d.get("name") in GRAYSCALE_DATASETS,
                   frame_stride=None if fps is not None else int(stride or 1),
                   target_fps=None if fps is None else float(fps),
                   resize="area" if d.get("name") in AREA_RESIZE else "bilinear")

    def timing(self) -> str:
        """``frame_stride 2`` or ``target_fps 12``."""
        return f"frame_stride {self.frame_stride}" if self.target_fps is None else f"target_fps {self.target_fps:g}"


@dataclass(frozen=True)
class SourceVideo:
    """A video file or a folder of frames: ``path``, ``num_frames`` source frames, ``fps`` (``None``:
    a folder without a given rate), ``frames`` (a folder's image files, sorted; empty for a video)."""

    path: str
    num_frames: int
    fps: float | None
    frames: tuple[str, ...] = ()

    @property
    def is_folder(self) -> bool:
        return bool(self.frames)

    def describe(self) -> str:
        """``clip.mp4 has 132 frames at 25 fps (5.28 s)``."""
        rate = f"at {self.fps:g} fps ({self.num_frames / self.fps:.2f} s)" if self.fps else "(no frame rate given)"
        return f"{self.path} has {self.num_frames} frames {rate}"


@dataclass(frozen=True)
class InputClip:
    """A preprocessed clip: ``frames`` ``(T, C, S, S)`` float in [0, 1], the ``source_indices`` of its
    frames, the source, ``step`` (source frames per clip frame) and ``fps`` (clip frames per second)."""

    frames: Tensor
    source_indices: list[int]
    source: SourceVideo
    step: float
    fps: float | None


def open_source(path: str | os.PathLike, fps: float | None = None) -> SourceVideo:
    """Describe a video file or a folder of frames; ``fps`` is a folder's frame rate (ignored for a file).

    Raises:
        FileNotFoundError: ``path`` does not exist, or is a folder without frames (names the extensions).
        VideoDecodeError: a file that cannot be opened as a video.
    """
    path = os.path.expanduser(os.fspath(path))
    if os.path.isdir(path):
        files = tuple(sorted(os.path.join(path, f) for f in os.listdir(path)
                             if os.path.splitext(f)[1].lower() in FRAME_EXTENSIONS))
        if not files:
            raise FileNotFoundError(f"no frames ({', '.join(FRAME_EXTENSIONS)}) in the folder {path}")
        return SourceVideo(path, len(files), float(fps) if fps else None, files)
    if not os.path.exists(path):
        raise FileNotFoundError(f"video file or folder of frames not found: {path}")
    with open_video(path) as video:  # VideoDecodeError for anything FFmpeg cannot read
        return SourceVideo(path, video.info.num_frames, video.info.fps)


def read_clip(source: SourceVideo, pre: InputPreprocessing, start: int, num_frames: int) -> InputClip:
    """Up to ``num_frames`` clip frames of ``source`` from source frame ``start``, preprocessed by ``pre``.

    Fewer come back when the source ends first (also when its container lists more frames than it holds).

    Raises:
        ValueError: ``start`` outside the source, or ``target_fps`` without the source's frame rate.
        VideoDecodeError: decoding failed part-way.
    """
    if not 0 <= start < source.num_frames:
        raise ValueError(f"start frame {start} is outside the source: {source.describe()}")
    if pre.target_fps is not None and not source.fps:
        raise ValueError(f"the run samples clips at target_fps {pre.target_fps:g}, but {source.path} is a folder "
                         "of frames without a frame rate: give its rate (--fps)")
    step = float(pre.frame_stride) if pre.target_fps is None else source.fps / pre.target_fps
    indices = [i for i in (int(math.floor(start + k * step + 0.5)) for k in range(num_frames)) if i < source.num_frames]
    rgb = _read_rgb(source, indices, pre)  # (T', 3, h, w) uint8, T' <= T
    return InputClip(frames=_finish(rgb, pre), source_indices=indices[:len(rgb)], source=source, step=step,
                     fps=source.fps / step if source.fps else None)


def _read_rgb(source: SourceVideo, indices: list[int], pre: InputPreprocessing) -> Tensor:
    """Source frames ``indices`` as ``(T, 3, h, w)`` uint8: shorter side ``S`` for ``"area"``, full size otherwise."""
    if source.is_folder:
        frames = [_load_image(source.frames[i], pre) for i in indices]
        return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()
    if pre.resize == "area":  # the frame cache's decoder path (futurelat.datasets.frame_cache)
        chunks = list(stream_frames(source.path, indices, short_side=pre.image_size))
        return torch.cat(chunks) if chunks else torch.zeros(0, 3, pre.image_size, pre.image_size, dtype=torch.uint8)
    with open_video(source.path) as video:  # Kinetics' path: frames at full size
        return video.read(indices)


def _load_image(path: str, pre: InputPreprocessing) -> np.ndarray:
    """One image as ``(h, w, 3)`` uint8 RGB; for ``"area"``, scaled by FFmpeg as a video frame would be."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"))
    if pre.resize != "area":
        return rgb
    import av

    h, w = rgb.shape[:2]
    scale = pre.image_size / min(h, w)
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    frame = frame.reformat(width=max(1, round(w * scale)), height=max(1, round(h * scale)), format="rgb24",
                           interpolation="AREA")
    return frame.to_ndarray(format="rgb24")


def _finish(rgb: Tensor, pre: InputPreprocessing) -> Tensor:
    """``(T, 3, h, w)`` uint8 → ``(T, C, S, S)`` float in [0, 1]: luma if gray, centre square, resized.

    The area path rounds to uint8 as the frame cache stores its frames; the bilinear one does not (Kinetics)."""
    x = rgb.float().div_(255.0)
    if pre.grayscale:
        x = (x * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    x = resize_center_crop(x, pre.image_size)  # (T, 1|3, S, S)
    if pre.resize == "area":
        x = x.mul_(255.0).round_().div_(255.0)
    return x.expand(-1, pre.channels, -1, -1).contiguous() if x.shape[1] == 1 else x
