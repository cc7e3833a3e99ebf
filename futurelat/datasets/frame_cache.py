"""Decoded, resized frames of a video file, cached once on disk and memory-mapped after.

Decoding a film again every epoch wastes the CPU: :func:`load_frames` decodes a file once (one
sequential PyAV pass, :func:`futurelat.datasets.video_io.stream_frames`), samples it at the clip
frame rate, makes it grayscale if asked, centre-crops and resizes every frame, and stores the
result as uint8 ``.npy``; later opens memory-map that file (no decoding; the pages are shared by
the processes and DataLoader workers that read it).

Sampling: clip frame ``k`` is source frame ``round(k * step)`` (``step = frame_stride``, or
``source fps / target_fps``), so a clip is ``T`` consecutive cached frames. Resizing: FFmpeg's
area filter scales the shorter side to ``image_size``, then the centre square is kept
(:func:`futurelat.datasets.clips.resize_center_crop`). Grayscale: ITU-R BT.601 luma.

Files, in ``cache_dir`` (default :func:`default_cache_dir`, ``~/.cache/futurelat/frames``):
``<stem>-<source key>-<settings key>.npy`` holds ``(N, C, S, S)`` uint8 frames and the ``.json``
beside it what they were made from: the source (real path, size in bytes, mtime in ns) and the
preprocessing (:class:`Preprocessing`). A cache is refused, and rebuilt with an INFO log line
saying why, when the source's size or mtime changed, or its meta or frames are unreadable or
disagree. Other preprocessing (size, channels, stride or fps) is another file: the log names what
differs from the source's caches already there, which are kept (64 and 128 px runs each keep
theirs). Deleting the folder is always safe.

Writes are atomic: each file is written under a temporary name in the same folder, fsynced and
renamed over its final name, the frames before the meta, so a crash leaves either no new file or
frames whose meta does not match them (refused and rebuilt on the next open). Two processes
building the same cache at once both decode; the last rename wins, and both results are equal.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO

import numpy as np
import torch

from futurelat.datasets.clips import resize_center_crop
from futurelat.datasets.shot_cuts import LUMA
from futurelat.datasets.video_io import VideoDecodeError, stream_frames, video_info

__all__ = ["CACHE_FORMAT", "CachedFrames", "Preprocessing", "default_cache_dir", "load_frames", "sample_indices"]

log = logging.getLogger(__name__)

#: Bumped when the cached pixels of the same settings would change (resize method, rounding).
CACHE_FORMAT = 1


@dataclass(frozen=True)
class Preprocessing:
    """What the cached frames are: ``image_size`` (side ``S`` in pixels), ``channels`` (1 gray or 3
    RGB), and exactly one of ``frame_stride`` (source frames per clip frame) and ``target_fps``."""

    image_size: int
    channels: int
    frame_stride: int | None = 1
    target_fps: float | None = None

    def step(self, source_fps: float) -> float:
        """Source frames per cached frame (> 0)."""
        return float(self.frame_stride) if self.frame_stride is not None else source_fps / self.target_fps

    def describe(self) -> dict[str, Any]:
        """The settings that identify a cache (its file name's key and the meta's ``preprocessing``)."""
        return {**asdict(self), "crop": "center", "resize": "area", "format": CACHE_FORMAT}


@dataclass(frozen=True)
class CachedFrames:
    """The cached frames of one video.

    Attributes:
        path: the ``.npy`` file.
        frames: ``(N, C, S, S)`` uint8 (0..255), memory-mapped read-only.
        fps: frames per second of ``frames`` (``source_fps / step``).
        source_indices: ``(N,)`` int64, the source frame of each cached frame.
    """

    path: str
    frames: np.ndarray
    fps: float
    source_indices: np.ndarray


def default_cache_dir() -> str:
    """``$XDG_CACHE_HOME/futurelat/frames``, or ``~/.cache/futurelat/frames`` (the usual user cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "futurelat", "frames")


def sample_indices(num_frames: int, step: float) -> np.ndarray:
    """Source frames ``floor(k * step + 0.5)`` for ``k = 0, 1, ...`` while inside ``[0, num_frames)``: ``(N,)`` int64."""
    count = max(0, int(np.ceil((num_frames - 0.5) / step)))
    return np.floor(np.arange(count) * step + 0.5).astype(np.int64)


# ------------------------------------------------------------------------- files


def _key(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:10]


def _source(path: str) -> dict[str, Any]:
    st = os.stat(path)
    return {"path": os.path.realpath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _stem(source: dict[str, Any]) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(os.path.basename(source["path"]))[0])[:60]
    return f"{name}-{_key(source['path'])}"


def _atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _read_meta(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _sibling_settings(path: str) -> dict[str, Any]:
    try:
        return dict(_read_meta(path).get("preprocessing") or {})
    except (OSError, ValueError, AttributeError):
        return {}


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    return ", ".join(f"{k} {old.get(k)!r} → {new.get(k)!r}" for k in sorted(set(old) | set(new))
                     if old.get(k) != new.get(k))


def _refusal(stem: str, npy: str, meta_path: str, source: dict[str, Any],
             settings: dict[str, Any]) -> tuple[str | None, np.ndarray | None, dict[str, Any] | None]:
    """(why the cache is refused or None, its memory-mapped frames, its meta)."""
    if not os.path.exists(meta_path):
        folder = os.path.dirname(meta_path)
        others = [_sibling_settings(os.path.join(folder, f)) for f in sorted(os.listdir(folder))
                  if f.startswith(stem + "-") and f.endswith(".json") and os.path.join(folder, f) != meta_path]
        if others:
            closest = min(others, key=lambda o: len(_differences(o, settings).split(", ")))
            return (f"no cache with these settings yet ({_differences(closest, settings)} from the "
                    f"{len(others)} other cache(s) of this source, kept)"), None, None
        return "no cache yet", None, None
    try:
        meta = _read_meta(meta_path)
    except (OSError, ValueError) as err:
        return f"its meta {meta_path} is unreadable ({err})", None, None
    if meta.get("preprocessing") != settings:
        return f"the preprocessing changed ({_differences(meta.get('preprocessing') or {}, settings)})", None, None
    if meta.get("source") != source:
        return f"the source changed ({_differences(meta.get('source') or {}, source)})", None, None
    try:
        frames = np.load(npy, mmap_mode="r")
    except (OSError, ValueError) as err:
        return f"its frames {npy} are unreadable ({type(err).__name__}: {err})", None, None
    if list(frames.shape) != meta.get("shape") or frames.dtype != np.uint8:
        return f"its frames {npy} are {frames.dtype} {list(frames.shape)}, the meta says uint8 {meta.get('shape')}", None, None
    return None, frames, meta


# ------------------------------------------------------------------------- building


def _to_uint8(rgb: torch.Tensor, pre: Preprocessing) -> np.ndarray:
    """``(B, 3, h, w)`` uint8 (shorter side ``S``) → ``(B, C, S, S)`` uint8, grayscale if ``channels == 1``."""
    x = rgb.float().div_(255.0)
    if pre.channels == 1:
        x = (x * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    x = resize_center_crop(x, pre.image_size)  # (B, C, S, S) float in [0, 1]
    return x.mul_(255.0).round_().to(torch.uint8).numpy()


def _build(path: str, pre: Preprocessing, num_threads: int) -> tuple[np.ndarray, dict[str, Any]]:
    info = video_info(path, "pyav")
    step = pre.step(info.fps)
    indices = sample_indices(info.num_frames, step)
    chunks = [_to_uint8(rgb, pre) for rgb in stream_frames(path, indices.tolist(), short_side=pre.image_size,
                                                             num_threads=num_threads)]
    frames = np.concatenate(chunks) if chunks else np.zeros((0, pre.channels, pre.image_size, pre.image_size), np.uint8)
    if not len(frames):
        raise VideoDecodeError(path, "no frame could be decoded")
    if len(frames) < len(indices):
        log.warning("%s: the stream ended after %d of the %d frames its container lists; caching those",
                    path, int(indices[len(frames) - 1]) + 1, info.num_frames)
    meta = {"source_fps": info.fps, "source_frames": info.num_frames, "step": step, "fps": info.fps / step,
            "shape": list(frames.shape)}
    return frames, meta


def load_frames(path: str | os.PathLike, pre: Preprocessing, cache_dir: str | os.PathLike | None = None,
                num_threads: int = 0) -> CachedFrames:
    """The frames of ``path`` under ``pre``: read from the cache, or decoded and cached first.

    Args:
        path: a video file (anything FFmpeg reads).
        pre: the preprocessing.
        cache_dir: the cache folder (created if needed); ``None``: :func:`default_cache_dir`.
        num_threads: decoder threads (0: FFmpeg's choice).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        VideoDecodeError: ``path`` cannot be decoded (corrupt, truncated, not a video).
        OSError: ``cache_dir`` cannot be created or written.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video file not found: {path}")
    folder = os.path.expanduser(os.fspath(cache_dir)) if cache_dir is not None else default_cache_dir()
    os.makedirs(folder, exist_ok=True)
    source, settings = _source(path), pre.describe()
    stem = _stem(source)
    base = os.path.join(folder, f"{stem}-{_key(settings)}")
    npy, meta_path = base + ".npy", base + ".json"
    reason, frames, meta = _refusal(stem, npy, meta_path, source, settings)
    if reason is None:
        log.info("frames of %s: cached in %s (%s, %.3g fps)", path, npy, "x".join(map(str, frames.shape)), meta["fps"])
    else:
        log.info("building the frame cache of %s: %s", path, reason)
        start = time.perf_counter()
        array, meta = _build(path, pre, num_threads)
        meta = {"format": CACHE_FORMAT, "source": source, "preprocessing": settings, **meta}
        _atomic_write(npy, lambda f: np.save(f, array))
        _atomic_write(meta_path, lambda f: f.write(json.dumps(meta, indent=1).encode()))
        log.info("cached %s frames of %s in %s (%.1f s)", "x".join(map(str, array.shape)), path, npy,
                 time.perf_counter() - start)
        frames = np.load(npy, mmap_mode="r")
    indices = sample_indices(meta["source_frames"], meta["step"])[:len(frames)]
    return CachedFrames(path=npy, frames=frames, fps=float(meta["fps"]), source_indices=indices)
