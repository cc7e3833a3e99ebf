"""video_io: frame round trip, metadata, backend agreement, errors on corrupt/missing files."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from futurelat.datasets import video_io
from futurelat.datasets.video_io import (VideoDecodeError, decord_available, open_video, read_frames,
                                         resolve_backend, video_info, write_video)

BACKENDS = ["pyav", pytest.param("decord", marks=pytest.mark.skipif(not decord_available(),
                                                                     reason="decord not installed"))]


def _moving_square(num_frames: int = 12, height: int = 32, width: int = 64) -> np.ndarray:
    """``(T, H, W, 3)`` uint8: a smooth gradient with a white square moving 2 px/frame to the right;
    frame ``t`` also has a brightness offset ``4 t`` so frames are distinguishable."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 3, y * 4, np.full_like(x, 80)], axis=-1).astype(np.int64)
    frames = []
    for t in range(num_frames):
        f = base + 4 * t
        f[8:20, 2 * t:2 * t + 12] = 255
        frames.append(np.clip(f, 0, 255))
    return np.stack(frames).astype(np.uint8)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    frames = _moving_square()
    path = write_video(tmp_path_factory.mktemp("vio") / "clip.mp4", frames, fps=12, crf=10)
    return path, frames


@pytest.mark.parametrize("backend", BACKENDS)
def test_round_trip_frames_and_order(clip, backend):
    path, frames = clip
    idx = [7, 0, 3, 11, 3]  # any order, repeats allowed
    out = read_frames(path, idx, backend=backend)
    assert out.dtype == torch.uint8 and out.shape == (5, 3, 32, 64)
    decoded = out.permute(0, 2, 3, 1).numpy().astype(np.int64)
    err = np.abs(decoded - frames[idx].astype(np.int64))
    assert err.mean() < 2.0, err.mean()
    # each decoded frame is closest to the frame it claims to be (order is right)
    for k, i in enumerate(idx):
        dists = np.abs(frames.astype(np.int64) - decoded[k]).mean(axis=(1, 2, 3))
        assert int(dists.argmin()) == i


@pytest.mark.parametrize("backend", BACKENDS)
def test_float_output_and_info(clip, backend):
    path, _ = clip
    with open_video(path, backend) as video:
        info = video.info
        as_uint8 = video.read([1, 2])
        as_float = video.read([1, 2], dtype=torch.float32)
    assert (info.num_frames, info.fps, info.height, info.width) == (12, 12.0, 32, 64)
    assert info.duration == pytest.approx(1.0)
    assert as_float.dtype == torch.float32 and 0 <= as_float.min() and as_float.max() <= 1
    torch.testing.assert_close(as_float, as_uint8.float() / 255)
    assert video_info(path, backend) == info


@pytest.mark.skipif(not decord_available(), reason="decord not installed")
def test_backends_agree(clip):
    path, _ = clip
    idx = [0, 5, 6, 10]
    a = read_frames(path, idx, backend="pyav").int()
    b = read_frames(path, idx, backend="decord").int()
    assert (a - b).abs().float().mean() < 0.5 and (a - b).abs().max() <= 3
    assert video_info(path, "pyav") == video_info(path, "decord")


def test_mpeg4_codec_round_trip(tmp_path):
    frames = _moving_square(6)
    path = write_video(tmp_path / "m.mp4", frames, fps=25, codec="mpeg4")
    out = read_frames(path, range(6), backend="pyav").permute(0, 2, 3, 1).numpy().astype(np.int64)
    assert np.abs(out - frames).mean() < 4.0
    assert video_info(path, "pyav").fps == 25.0


def _corrupt_files(tmp_path, clip_path):
    data = open(clip_path, "rb").read()
    files = {"garbage.mp4": b"\x00\x01garbage" * 300, "empty.mp4": b"", "truncated.mp4": data[: len(data) // 3]}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    return [tmp_path / name for name in files]


@pytest.mark.parametrize("backend", [*BACKENDS, "auto"])
def test_corrupt_files_raise_decode_error_naming_path(tmp_path, clip, backend):
    for path in _corrupt_files(tmp_path, clip[0]):
        with pytest.raises(VideoDecodeError) as info:
            read_frames(path, [0, 11], backend=backend)
        assert str(path) in str(info.value) and info.value.path == str(path) and info.value.reason


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_file_and_bad_indices(tmp_path, clip, backend):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        read_frames(tmp_path / "nope.mp4", [0], backend=backend)
    with pytest.raises(IndexError, match=r"\[12\].*clip.mp4"):
        read_frames(clip[0], [0, 12], backend=backend)
    with pytest.raises(IndexError):
        read_frames(clip[0], [-1], backend=backend)


def test_decode_error_pickles():
    err = pickle.loads(pickle.dumps(VideoDecodeError("/x/a.mp4", "bad header")))
    assert isinstance(err, VideoDecodeError) and err.path == "/x/a.mp4" and "bad header" in str(err)


def test_resolve_backend(monkeypatch):
    assert resolve_backend("pyav") == "pyav"
    assert resolve_backend("auto") == ("decord" if decord_available() else "pyav")
    with pytest.raises(ValueError, match="unknown video backend 'opencv'"):
        resolve_backend("opencv")
    monkeypatch.setattr(video_io, "decord_available", lambda: False)
    assert resolve_backend("auto") == "pyav"
    with pytest.raises(ImportError, match="decord"):
        resolve_backend("decord")


def test_write_video_gives_the_same_bytes_between_decodes(tmp_path):
    """Small frames encoded again after a decode: x264's macroblock tree made these bytes vary."""
    rng = np.random.default_rng(0)
    frames = _moving_square(12, 32, 32)
    frames = np.clip(frames.astype(np.int64) + rng.integers(-20, 20, frames.shape), 0, 255).astype(np.uint8)
    blobs = []
    for k in range(6):
        path = write_video(tmp_path / f"clip{k}.mp4", frames)
        blobs.append(open(path, "rb").read())
        read_frames(path, range(12), backend="pyav")
    assert all(blob == blobs[0] for blob in blobs)


def test_write_video_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="even frame size"):
        write_video(tmp_path / "a.mp4", np.zeros((2, 31, 32, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\) uint8"):
        write_video(tmp_path / "a.mp4", np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="fps"):
        write_video(tmp_path / "a.mp4", np.zeros((2, 32, 32, 3), np.uint8), fps=0)


@pytest.mark.skipif(not decord_available(), reason="decord not installed")
def test_auto_falls_back_to_pyav_when_decord_fails(clip, monkeypatch):
    path, frames = clip

    def broken(self, idx):
        raise RuntimeError("decord cannot convert this frame size")

    monkeypatch.setattr(video_io.VideoFile, "_read_decord", broken)
    with open_video(path, "auto") as video:
        assert video.backend == "decord"
        out = video.read([2, 4])
        assert video.backend == "pyav"
    assert np.abs(out.permute(0, 2, 3, 1).numpy().astype(np.int64) - frames[[2, 4]]).mean() < 2.0
    with pytest.raises(VideoDecodeError, match="cannot convert"):  # an explicit backend does not fall back
        read_frames(path, [2], backend="decord")


def test_stream_frames_matches_read_and_scales(clip):
    """One sequential pass gives the frames ``read`` gives (repeats kept), in chunks; ``short_side``
    scales keeping the aspect ratio; a too-large index just ends the stream; corrupt files raise."""
    path, _ = clip
    indices = [0, 0, 3, 5, 6, 11]
    chunks = list(video_io.stream_frames(path, indices, chunk_size=4))
    assert [c.shape[0] for c in chunks] == [4, 2] and chunks[0].dtype == torch.uint8
    assert torch.equal(torch.cat(chunks), read_frames(path, indices, backend="pyav"))
    small = torch.cat(list(video_io.stream_frames(path, [1, 2], short_side=16)))
    assert small.shape == (2, 3, 16, 32)
    assert sum(c.shape[0] for c in video_io.stream_frames(path, [10, 11, 40])) == 2
    with pytest.raises(ValueError, match="non-decreasing"):
        list(video_io.stream_frames(path, [3, 2]))
    with pytest.raises(FileNotFoundError):
        list(video_io.stream_frames(path.replace("clip.mp4", "nope.mp4"), [0]))
