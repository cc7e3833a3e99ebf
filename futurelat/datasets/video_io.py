"""Video files: read selected frames (decord or PyAV), stream a whole file (PyAV), read metadata,
write test clips (PyAV).

Shape notation: ``T`` frames read, ``C = 3`` RGB channels, ``H x W`` the video's own size.

Frame ``i`` is the ``i``-th frame in presentation order, counted from 0 (constant frame rate
assumed, as in Kinetics). Two backends decode the same frames:

- ``"decord"``: seeks to the keyframe before each requested frame, so reading a clip late
  in a long video costs about as much as one early in it. Installed on x86_64 only.
- ``"pyav"``: always available (PyAV is a dependency). It decodes sequentially from the
  first frame up to ``max(indices)`` and converts only the requested frames to RGB, so a
  clip's cost grows with its last index.

``backend="auto"`` uses decord when it imports, else PyAV, and retries a file with PyAV when
decord fails on it (decord 0.6 cannot convert frames of some small widths, e.g. 16, 24, 48 or
72 pixels). Any failure to open or decode a file raises :class:`VideoDecodeError` (naming the
path); a path that does not exist raises ``FileNotFoundError``.

Example::

    with open_video("clip.mp4") as video:          # VideoInfo in video.info
        frames = video.read(range(0, 32, 2))       # (16, 3, H, W) uint8
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "BACKENDS",
    "VideoDecodeError",
    "VideoFile",
    "VideoInfo",
    "decord_available",
    "open_video",
    "read_frames",
    "resolve_backend",
    "stream_frames",
    "video_info",
    "write_video",
]

#: Valid ``backend`` arguments.
BACKENDS = ("auto", "decord", "pyav")

Backend = Literal["auto", "decord", "pyav"]


class VideoDecodeError(RuntimeError):
    """A video file that cannot be opened or decoded (corrupt, truncated, not a video).

    Attributes:
        path: the file, as given.
        reason: what the backend reported.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = str(reason)
        super().__init__(f"cannot decode video {self.path}: {self.reason}")

    def __reduce__(self):  # picklable across DataLoader workers
        return type(self), (self.path, self.reason)


@dataclass(frozen=True)
class VideoInfo:
    """Metadata of a video's first video stream.

    Attributes:
        num_frames: frames in the stream (> 0).
        fps: average frame rate in frames per second (> 0).
        height, width: frame size in pixels.
    """

    num_frames: int
    fps: float
    height: int
    width: int

    @property
    def duration(self) -> float:
        """``num_frames / fps`` in seconds."""
        return self.num_frames / self.fps


@functools.lru_cache(maxsize=1)
def decord_available() -> bool:
    """Whether ``import decord`` works (cached)."""
    try:
        importlib.import_module("decord")
    except ImportError:
        return False
    return True


def resolve_backend(backend: str = "auto") -> str:
    """``"decord"`` or ``"pyav"`` for ``backend`` in :data:`BACKENDS`.

    Raises:
        ValueError: unknown ``backend``.
        ImportError: ``backend="decord"`` but decord is not installed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    if backend == "auto":
        return "decord" if decord_available() else "pyav"
    if backend == "decord" and not decord_available():
        raise ImportError("video backend 'decord' requested but decord is not installed "
                          "(it has wheels for x86_64 only); use backend 'pyav' or 'auto'")
    return backend


# ------------------------------------------------------------------------- reading


class VideoFile:
    """An open video: :attr:`info` and :meth:`read`. Use as a context manager, or call :meth:`close`.

    Args:
        path: video file (mp4, webm, mkv, ... anything FFmpeg reads).
        backend: ``"auto"`` | ``"decord"`` | ``"pyav"`` (see the module docstring); the
            backend in use is :attr:`backend` (``"pyav"`` after an ``"auto"`` fallback).
        num_threads: decoder threads; 0 lets the backend choose (decord: auto,
            PyAV: FFmpeg's frame+slice threading).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        VideoDecodeError: the file cannot be opened, has no video stream or no frames.
        ValueError / ImportError: see :func:`resolve_backend`.
    """

    def __init__(self, path: str | os.PathLike, backend: Backend = "auto", num_threads: int = 0):
        self.path = os.fspath(path)
        self.backend = resolve_backend(backend)
        self.num_threads = int(num_threads)
        #: ``backend="auto"`` with decord: a decord failure switches this file to PyAV.
        self._fallback = backend == "auto" and self.backend == "decord"
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"video file not found: {self.path}")
        self._reader = None
        self._container = None
        try:
            self.info = self._open()
        except Exception:
            if not self._fallback:
                raise
            self._use_pyav()

    def _open(self) -> VideoInfo:
        try:
            opener = self._open_decord if self.backend == "decord" else self._open_pyav
            return opener(self.num_threads)
        except VideoDecodeError:
            self.close()
            raise
        except Exception as err:  # backends raise RuntimeError, DECORDError, av.FFmpegError, ...
            self.close()
            raise VideoDecodeError(self.path, f"{type(err).__name__}: {err}") from err

    def _use_pyav(self) -> None:
        """Reopen with PyAV after decord failed (``backend="auto"``); raises PyAV's error if it fails too."""
        self.close()
        self.backend, self._fallback = "pyav", False
        self.info = self._open()

    # -- backends ----------------------------------------------------------------------------

    def _open_decord(self, num_threads: int) -> VideoInfo:
        import decord

        self._reader = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=num_threads)
        n = len(self._reader)
        if n < 1:
            raise VideoDecodeError(self.path, "the video stream has no frames")
        height, width = self._decord_size()
        return VideoInfo(num_frames=n, fps=_valid_fps(self._reader.get_avg_fps(), self.path),
                         height=height, width=width)

    def _decord_size(self) -> tuple[int, int]:
        # decord exposes the size only through decoded frames; the container header has it
        # without decoding (about 1 ms).
        import av

        with av.open(self.path) as container:
            stream = _video_stream(container, self.path)
            return int(stream.codec_context.height), int(stream.codec_context.width)

    def _open_pyav(self, num_threads: int) -> VideoInfo:
        import av

        self._container = av.open(self.path)
        stream = _video_stream(self._container, self.path)
        stream.thread_type = "AUTO"
        if num_threads:
            stream.codec_context.thread_count = num_threads
        n = int(stream.frames or 0)
        if n < 1:  # containers without a frame count (e.g. webm): count packets, no decoding
            n = sum(1 for p in self._container.demux(stream) if p.size)
            self._container.seek(0)
        if n < 1:
            raise VideoDecodeError(self.path, "the video stream has no frames")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        return VideoInfo(num_frames=n, fps=_valid_fps(rate, self.path),
                         height=int(stream.codec_context.height), width=int(stream.codec_context.width))

    def _read_decord(self, idx: list[int]) -> np.ndarray:
        unique = sorted(set(idx))
        batch = self._reader.get_batch(unique).asnumpy()  # (U, H, W, 3) uint8
        where = {i: k for k, i in enumerate(unique)}
        return batch[[where[i] for i in idx]]

    def _read_pyav(self, idx: list[int]) -> np.ndarray:
        container = self._container
        container.seek(0)
        wanted, last = set(idx), max(idx)
        got: dict[int, np.ndarray] = {}
        count = -1
        for count, frame in enumerate(container.decode(video=0)):
            if count in wanted:
                got[count] = frame.to_ndarray(format="rgb24")
            if count >= last:
                break
        if count < last:
            raise VideoDecodeError(self.path, f"frame {last} requested but the stream ended after "
                                              f"{count + 1} frames (metadata says {self.info.num_frames})")
        return np.stack([got[i] for i in idx])

    # -- public ------------------------------------------------------------------------------

    def read(self, indices: Sequence[int], dtype: torch.dtype = torch.uint8) -> Tensor:
        """Frames ``indices`` (any order, repeats allowed) as ``(T, 3, H, W)``.

        Args:
            indices: ``T >= 1`` frame indices in ``[0, info.num_frames)``.
            dtype: ``torch.uint8`` (values 0..255) or a float dtype (values in [0, 1]).

        Raises:
            IndexError: an index outside ``[0, info.num_frames)`` (names the path).
            VideoDecodeError: decoding failed (corrupt or truncated data).
        """
        idx = [int(i) for i in indices]
        if not idx:
            raise IndexError(f"no frame indices given for {self.path}")
        bad = [i for i in idx if not 0 <= i < self.info.num_frames]
        if bad:
            raise IndexError(f"frame indices {bad[:5]} out of range [0, {self.info.num_frames}) for {self.path}")
        try:
            frames = self._read_decord(idx) if self.backend == "decord" else self._read_pyav(idx)
        except Exception as err:
            if self._fallback:
                self._use_pyav()
                try:
                    return self.read(indices, dtype)
                except IndexError as index_err:  # PyAV counts fewer frames than decord did
                    raise VideoDecodeError(self.path, str(index_err)) from index_err
            if isinstance(err, VideoDecodeError):
                raise
            raise VideoDecodeError(self.path, f"{type(err).__name__}: {err}") from err
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise VideoDecodeError(self.path, f"decoded frames have shape {frames.shape}; expected (T, H, W, 3)")
        video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # (T, 3, H, W)
        if dtype == torch.uint8:
            return video.contiguous()
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be torch.uint8 or a float dtype; got {dtype}")
        return video.to(dtype).div_(255.0)

    def close(self) -> None:
        """Release the file (idempotent)."""
        if self._container is not None:
            self._container.close()
            self._container = None
        self._reader = None

    def __enter__(self) -> VideoFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VideoFile({self.path!r}, backend={self.backend!r}, info={self.info})"


def _video_stream(container, path: str):
    if not container.streams.video:
        raise VideoDecodeError(path, "no video stream")
    return container.streams.video[0]


def _valid_fps(rate, path: str) -> float:
    fps = float(rate) if rate else 0.0
    if not fps > 0 or not np.isfinite(fps):
        raise VideoDecodeError(path, f"invalid frame rate {rate!r}")
    return fps


def open_video(path: str | os.PathLike, backend: Backend = "auto", num_threads: int = 0) -> VideoFile:
    """:class:`VideoFile` ``(path, backend, num_threads)``: open once, read metadata and frames."""
    return VideoFile(path, backend, num_threads)


def video_info(path: str | os.PathLike, backend: Backend = "auto") -> VideoInfo:
    """Frame count, fps and size of ``path`` (errors as :class:`VideoFile`)."""
    with open_video(path, backend) as video:
        return video.info


def read_frames(path: str | os.PathLike, indices: Sequence[int], backend: Backend = "auto",
                dtype: torch.dtype = torch.uint8) -> Tensor:
    """Frames ``indices`` of ``path`` as ``(T, 3, H, W)``: uint8 0..255, or float in [0, 1].

    Raises:
        FileNotFoundError, VideoDecodeError, IndexError: see :class:`VideoFile` and :meth:`VideoFile.read`.
    """
    with open_video(path, backend) as video:
        return video.read(indices, dtype)


def stream_frames(path: str | os.PathLike, indices: Sequence[int], *, short_side: int | None = None,
                  chunk_size: int = 64, num_threads: int = 0) -> Iterator[Tensor]:
    """Frames ``indices`` of ``path`` in one sequential PyAV pass, as ``(B, 3, H', W')`` uint8 chunks.

    For reading a whole film (a frame cache): each frame is decoded once and only the requested
    ones are converted to RGB, scaled by FFmpeg (area filter) so their shorter side is ``short_side``
    pixels (the aspect ratio kept, ``None``: the video's own size). Stops without error when the
    stream ends before ``max(indices)`` (container frame counts can be off): the caller then gets
    fewer frames than ``indices``.

    Args:
        indices: non-decreasing frame indices ``>= 0`` (repeats allowed).
        chunk_size: frames per chunk (the last may be shorter).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        VideoDecodeError: the file cannot be opened or decoding fails part-way (names the path).
        ValueError: decreasing or negative ``indices``.
    """
    idx = [int(i) for i in indices]
    if any(b < a for a, b in zip(idx, idx[1:])) or (idx and idx[0] < 0):
        raise ValueError(f"stream_frames({path}): indices must be non-decreasing and >= 0")
    with open_video(path, "pyav", num_threads) as video:
        info, size = video.info, None
        if short_side is not None:
            scale = short_side / min(info.height, info.width)
            size = (max(1, round(info.width * scale)), max(1, round(info.height * scale)))
        chunk: list[np.ndarray] = []
        pos = 0  # next position in idx
        try:
            for count, frame in enumerate(video._container.decode(video=0)):
                if pos >= len(idx):
                    break
                if idx[pos] != count:
                    continue
                if size is not None:
                    frame = frame.reformat(width=size[0], height=size[1], format="rgb24", interpolation="AREA")
                rgb = frame.to_ndarray(format="rgb24")
                while pos < len(idx) and idx[pos] == count:
                    chunk.append(rgb)
                    pos += 1
                if len(chunk) >= chunk_size:
                    yield torch.from_numpy(np.stack(chunk)).permute(0, 3, 1, 2).contiguous()
                    chunk = []
        except Exception as err:  # av.FFmpegError and friends, part-way through the file
            raise VideoDecodeError(video.path, f"{type(err).__name__}: {err}") from err
        if chunk:
            yield torch.from_numpy(np.stack(chunk)).permute(0, 3, 1, 2).contiguous()


# ------------------------------------------------------------------------- writing


def write_video(path: str | os.PathLike, frames: np.ndarray | Tensor, fps: float = 8.0, *,
                codec: str | None = None, crf: int = 18, gop: int | None = None) -> str:
    """Encode RGB frames into an mp4 (yuv420p) with PyAV; for tests, benchmarks and toy data.

    Deterministic: the RGB → YUV conversion and the encoder each run on one thread, and x264's
    macroblock tree is off, so the same frames give the same bytes whatever the machine's core
    count or load (x264's decisions depend on its thread count, swscale's slice threading on the
    cores it finds, and the macroblock tree read memory it had not written on small frames).

    Args:
        path: output file; parent folders are created.
        frames: ``(T, H, W, 3)`` uint8 array or tensor, ``T >= 1``, ``H`` and ``W`` even
            (yuv420p subsamples chroma by 2).
        fps: frame rate (frames per second, > 0; fractional rates are rounded to 1/1000).
        codec: ``"libx264"`` (default when FFmpeg has it) or ``"mpeg4"``.
        crf: libx264 constant rate factor (0 = lossless luma, 18 = visually near-lossless).
        gop: frames between key frames; ``None`` = the encoder's default (libx264: 250, the
            usual for Kinetics clips re-encoded by ffmpeg).

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: wrong shape/dtype, odd size, ``fps <= 0`` or ``gop < 1``.
    """
    import av
    from fractions import Fraction

    array = frames.numpy() if isinstance(frames, Tensor) else np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8 or not len(array):
        raise ValueError(f"write_video({path}): frames must be (T, H, W, 3) uint8 with T >= 1; "
                         f"got {array.dtype} {array.shape}")
    height, width = array.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"write_video({path}): yuv420p needs an even frame size; got H={height}, W={width}")
    if not fps > 0:
        raise ValueError(f"write_video({path}): fps must be > 0; got {fps}")
    if gop is not None and int(gop) < 1:
        raise ValueError(f"write_video({path}): gop must be >= 1 or None; got {gop}")
    codec = codec or ("libx264" if "libx264" in av.codecs_available else "mpeg4")
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with av.open(path, mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1
        if gop is not None:
            stream.codec_context.gop_size = int(gop)
        if codec == "libx264":
            # mbtree=0: x264's macroblock-tree lookahead made the bytes of a 32x32 clip differ between
            # calls in a process that also decodes video (PyAV 18.1, seen 2026-11-30); without it the
            # same frames give the same bytes.
            stream.options = {"crf": str(int(crf)), "preset": "veryfast", "x264-params": "mbtree=0"}
        else:
            stream.bit_rate = 8 * width * height * int(np.ceil(fps))  # ~1 byte/pixel/frame: near-lossless
        for frame in array:
            rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            container.mux(stream.encode(rgb.reformat(format="yuv420p", threads=1)))
        container.mux(stream.encode())
    return path
