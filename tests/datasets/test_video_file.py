"""video_file / steamboat_willie: the time split, clip shapes, sampling, the frame cache, shot cuts,
skipped files, the builder's errors and the composed configs.

Test videos encode their frame index: frame ``t`` is a uniform grey of level ``16 + 4 t``, so the
source index of every clip frame can be read back from its mean.
"""

from __future__ import annotations

import logging
import os
import pickle
import warnings

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from futurelat.config.dataset import VideoFileConfig
from futurelat.datasets import build_dataset, frame_cache
from futurelat.datasets.shot_cuts import detect_shot_cuts, frame_differences, segments_between
from futurelat.datasets.steamboat_willie import ARCHIVE_URL, build_steamboat_willie
from futurelat.datasets.video_file import SkippedVideoWarning, VideoFileDataset, build_video_file
from futurelat.datasets.video_io import write_video

from composing import compose_config

CACHE_LOG = "futurelat.datasets.frame_cache"


def _indexed(path, num_frames: int = 60, fps: float = 10.0, height: int = 24, width: int = 40):
    levels = 16 + 4 * np.arange(num_frames)
    frames = np.broadcast_to(levels[:, None, None, None], (num_frames, height, width, 3)).astype(np.uint8)
    return write_video(path, frames, fps=fps, crf=10)


def _ids(frames: torch.Tensor) -> list[int]:
    """Source frame indices of a ``(T, C, S, S)`` clip of :func:`_indexed` frames."""
    return ((frames.mean(dim=(1, 2, 3)) * 255 - 16) / 4).round().int().tolist()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return _indexed(tmp_path_factory.mktemp("videos") / "indexed.mp4")


def _ds(path, cache_dir, split="train", **kw) -> VideoFileDataset:
    cfg = {"path": str(path), "cache_dir": str(cache_dir), "image_size": 8, "context_frames": 2,
           "future_frames": 2, "test_fraction": 0.2, **kw}
    return build_video_file(cfg, split)


# ----------------------------------------------------------------------------- clips


def test_split_by_time_never_overlaps(video, tmp_path):
    """60 frames, T = 4, 20 % held out: test clips tile frames 48..59, training clips end at 43 at the latest."""
    train, test = _ds(video, tmp_path), _ds(video, tmp_path, "test")
    assert train.split_range(0) == (0, 44) and test.split_range(0) == (48, 60)
    assert [s for _, s in test.clip_starts()] == [48, 52, 56] and len(test) == 3
    assert [s for _, s in train.clip_starts()] == list(range(41)) and len(train) == 11  # 11 tiles of 4 in 44
    last_train_end = max(s for _, s in train.clip_starts()) + 4
    assert min(s for _, s in test.clip_starts()) - last_train_end >= 4  # a gap of one clip
    torch.manual_seed(0)
    seen = [_ids(train[i % len(train)]["frames"]) for i in range(60)]
    assert max(max(ids) for ids in seen) <= 43 and len({ids[0] for ids in seen}) > 20  # random starts
    for i in range(len(test)):
        item = test[i]
        assert _ids(item["frames"]) == list(range(item["start"], item["start"] + 4)) and item["start"] >= 48
    first = test[0]["start"]
    torch.manual_seed(123)
    assert test[0]["start"] == first  # fixed, whatever the RNG
    spread = _ds(video, tmp_path, "test", test_clips=2)
    assert [s for _, s in spread.clip_starts()] == [48, 56]


def test_clip_shapes_value_range_and_items(video, tmp_path):
    item = _ds(video, tmp_path, image_size=16)[0]
    frames = item["frames"]
    assert set(item) == {"frames", "video", "start"} and item["video"] == str(video)
    assert frames.shape == (4, 3, 16, 16) and frames.dtype == torch.float32
    assert 0.0 <= frames.min() and frames.max() <= 1.0
    assert len(_ds(video, tmp_path, context_frames=3, future_frames=5)[0]["frames"]) == 8


def test_grayscale_and_rgb(tmp_path):
    rgb = np.zeros((12, 24, 40, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 40, 10
    path = write_video(tmp_path / "red.mp4", rgb, fps=10, crf=0)
    color = _ds(path, tmp_path, test_fraction=0)[0]["frames"]
    gray = _ds(path, tmp_path, test_fraction=0, channels=1)[0]["frames"]
    assert color.shape == (4, 3, 8, 8) and gray.shape == (4, 1, 8, 8)
    assert torch.allclose(color.mean(dim=(0, 2, 3)) * 255, torch.tensor([200.0, 40.0, 10.0]), atol=8)
    luma = 0.299 * 200 + 0.587 * 40 + 0.114 * 10
    assert abs(gray.mean().item() * 255 - luma) < 4


def test_frame_stride_and_target_fps(video, tmp_path):
    """Stride 3: cached frames are source frames 0, 3, 6, ...; 10 fps at target_fps 5: step 2."""
    test = _ds(video, tmp_path, "test", frame_stride=3)  # 20 cached frames, the last 4 held out
    item = test[0]
    assert _ids(item["frames"]) == [48, 51, 54, 57] == [item["start"] + 3 * k for k in range(4)]
    assert test.fps == [pytest.approx(10 / 3)]
    by_fps = _ds(video, tmp_path, "test", frame_stride=None, target_fps=5.0)
    assert _ids(by_fps[0]["frames"]) == [48, 50, 52, 54] and by_fps.fps == [pytest.approx(5.0)]


# ----------------------------------------------------------------------------- cache


@pytest.fixture
def decodes(monkeypatch):
    """Counts the decoder passes of the frame cache."""
    calls = []
    real = frame_cache.stream_frames

    def counting(path, *args, **kwargs):
        calls.append(os.path.basename(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(frame_cache, "stream_frames", counting)
    return calls


def test_cache_is_built_once_and_reused(video, tmp_path, decodes, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger=CACHE_LOG)
    first = _ds(video, tmp_path)
    assert decodes == ["indexed.mp4"] and "no cache yet" in caplog.text
    files = sorted(os.listdir(tmp_path))
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".npy")  # no temporary left
    assert isinstance(first.frames[0], np.memmap) and first.frames[0].shape == (60, 3, 8, 8)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cache should have been read")

    monkeypatch.setattr(frame_cache, "stream_frames", no_decoding)
    again, test = _ds(video, tmp_path), _ds(video, tmp_path, "test")
    assert np.array_equal(again.frames[0], first.frames[0]) and len(test) == 3
    assert sorted(os.listdir(tmp_path)) == files


def test_cache_is_refused_when_the_preprocessing_changes(video, tmp_path, decodes, caplog):
    caplog.set_level(logging.INFO, logger=CACHE_LOG)
    _ds(video, tmp_path)
    _ds(video, tmp_path, image_size=4)
    assert len(decodes) == 2 and "image_size 8 → 4" in caplog.text
    _ds(video, tmp_path, channels=1)
    _ds(video, tmp_path, frame_stride=2)
    assert len(decodes) == 4 and "channels 3 → 1" in caplog.text and "frame_stride 1 → 2" in caplog.text
    _ds(video, tmp_path, image_size=4)  # every setting keeps its own cache
    assert len(decodes) == 4 and len(os.listdir(tmp_path)) == 8


def test_cache_is_refused_when_the_source_changes(tmp_path, decodes, caplog):
    caplog.set_level(logging.INFO, logger=CACHE_LOG)
    path = _indexed(tmp_path / "v.mp4", num_frames=40)
    assert len(_ds(path, tmp_path / "cache").frames[0]) == 40
    _indexed(tmp_path / "v.mp4", num_frames=50)
    assert len(_ds(path, tmp_path / "cache").frames[0]) == 50
    assert len(decodes) == 2 and "the source changed" in caplog.text
    os.utime(path, ns=(1, 1))  # same bytes, another mtime
    _ds(path, tmp_path / "cache")
    assert len(decodes) == 3 and "mtime_ns" in caplog.text


def test_a_crash_while_writing_leaves_no_cache(video, tmp_path, monkeypatch, caplog):
    def crash(file, array):
        file.write(b"\x93NUMPY half a header")
        raise RuntimeError("crash")

    with monkeypatch.context() as patch:
        patch.setattr(frame_cache.np, "save", crash)
        with pytest.raises(RuntimeError, match="crash"):
            _ds(video, tmp_path)
    assert os.listdir(tmp_path) == []
    first = np.array(_ds(video, tmp_path).frames[0])  # a copy: the file is damaged in place below
    npy = next(p for p in os.listdir(tmp_path) if p.endswith(".npy"))
    with open(tmp_path / npy, "r+b") as f:  # a damaged frames file is refused, then rebuilt
        f.truncate(200)
    caplog.set_level(logging.INFO, logger=CACHE_LOG)
    assert np.array_equal(_ds(video, tmp_path).frames[0], first)
    assert "are unreadable" in caplog.text


def test_dataset_pickles_without_its_frames(video, tmp_path):
    ds = _ds(video, tmp_path, "test")
    copy = pickle.loads(pickle.dumps(ds))
    assert copy.frames is None and torch.equal(copy[1]["frames"], ds[1]["frames"])


# ----------------------------------------------------------------------------- files


def test_folder_with_a_corrupt_file_skips_and_counts_it(video, tmp_path):
    folder = tmp_path / "films"
    _indexed(folder / "a.mp4", num_frames=30)
    _indexed(folder / "sub" / "b.mkv", num_frames=30)
    data = (folder / "a.mp4").read_bytes()
    (folder / "c.mp4").write_bytes(data[:300])  # truncated
    (folder / "notes.txt").write_text("not a video, not listed")
    with pytest.warns(SkippedVideoWarning, match=r"unreadable video .*c\.mp4") as record:
        ds = build_video_file({"path": str(folder), "cache_dir": str(tmp_path / "cache"), "image_size": 8,
                               "context_frames": 2, "future_frames": 2, "test_fraction": 0.2}, "test")
    assert len(record) == 1 and ds.num_skipped == 1 and list(ds.unreadable) == [str(folder / "c.mp4")]
    assert ds.videos == [str(folder / "a.mp4"), str(folder / "sub" / "b.mkv")]
    assert {ds[i]["video"] for i in range(len(ds))} == set(ds.videos)
    listed = build_video_file({"path": [str(folder / "a.mp4"), str(video)], "cache_dir": str(tmp_path / "cache"),
                               "image_size": 8, "context_frames": 2, "future_frames": 2}, "train")
    assert listed.videos == [str(folder / "a.mp4"), str(video)] and listed.num_skipped == 0


def test_all_files_unreadable_is_a_clear_error(tmp_path):
    for name in ("x.mp4", "y.mp4"):
        (tmp_path / name).write_bytes(b"not a video" * 50)
    with pytest.warns(SkippedVideoWarning), pytest.raises(ValueError, match="none of the 2 video file") as err:
        _ds(tmp_path, tmp_path / "cache")
    assert str(tmp_path / "x.mp4") in str(err.value) and str(tmp_path / "y.mp4") in str(err.value)
    with pytest.raises(FileNotFoundError, match="no video file"):
        _ds(tmp_path / "cache", tmp_path / "cache")


def test_missing_film_says_where_to_get_it(tmp_path):
    with pytest.raises(ValueError, match="dataset.path is not set") as err:
        build_steamboat_willie({"path": None, "cache_dir": str(tmp_path)}, "train")
    assert ARCHIVE_URL in str(err.value) and "dataset.path=/path/to/film.mp4" in str(err.value)
    with pytest.raises(FileNotFoundError, match="not found: .*nowhere.mp4") as err:
        build_steamboat_willie({"path": str(tmp_path / "nowhere.mp4"), "cache_dir": str(tmp_path)}, "train")
    assert ARCHIVE_URL in str(err.value)
    with pytest.raises(ValueError, match="dataset.path is not set") as err:
        build_video_file({"path": None}, "train")
    assert "archive.org" not in str(err.value)


# ----------------------------------------------------------------------------- shot cuts


def _shots(path, lengths=(14, 16, 18), size=(24, 40)):
    """Hard cuts between shots of different layouts, a small square moving inside each shot."""
    h, w = size
    frames = []
    for shot, n in enumerate(lengths):
        for t in range(n):
            f = np.full((h, w, 3), 40, np.uint8)
            if shot == 0:
                f[:, : w // 2] = 220
            elif shot == 1:
                f[: h // 2] = 220
            else:
                f[:, w // 2:] = 220
            f[4:10, 2 + t:8 + t] = 128  # motion within the shot
            frames.append(f)
    return write_video(path, np.stack(frames), fps=10, crf=10)


def test_shot_cuts_are_found_and_never_straddled(tmp_path):
    path = _shots(tmp_path / "cuts.mp4")
    train = _ds(path, tmp_path, shot_cuts=True, test_fraction=0.25)
    assert train.cuts == [[14, 30]]
    test = _ds(path, tmp_path, "test", shot_cuts=True, test_fraction=0.25)  # frames 36..47
    for ds in (train, test):
        for _, start in ds.clip_starts():
            assert not any(start < cut < start + 4 for cut in ds.cuts[0]), (ds.split, start)
    assert [s for _, s in test.clip_starts()] == [36, 40, 44]
    # without detection the same clips may straddle the cuts
    assert any(s < 14 < s + 4 for _, s in _ds(path, tmp_path, test_fraction=0.25).clip_starts())


def test_shot_cut_detector_and_segments():
    frames = torch.zeros(6, 1, 16, 16)
    frames[3:] = 1.0
    frames[1, :, :2] = 0.5  # a small change: no cut
    scores = frame_differences(frames)
    assert scores.shape == (5,) and scores[2] == 1.0 and 0 < scores[0] < 0.1
    assert detect_shot_cuts(frames, threshold=0.1) == [3]
    assert detect_shot_cuts((frames * 255).to(torch.uint8).repeat(1, 3, 1, 1), threshold=0.1) == [3]
    assert segments_between(0, 10, [3, 3, 12, 0]) == [(0, 3), (3, 10)]
    assert segments_between(4, 8, []) == [(4, 8)]
    with pytest.raises(ValueError, match="threshold"):
        detect_shot_cuts(frames, threshold=0)


# ----------------------------------------------------------------------------- config


def test_builder_errors_name_the_key(video, tmp_path):
    base = {"path": str(video), "cache_dir": str(tmp_path)}
    with pytest.raises(ValueError, match=r"dataset.test_fraction must be in \[0, 1\)"):
        build_video_file({**base, "test_fraction": 1.0}, "train")
    with pytest.raises(ValueError, match="dataset.frame_stride and dataset.target_fps"):
        build_video_file({**base, "target_fps": 5.0}, "train")
    with pytest.raises(ValueError, match="dataset.channels must be 1"):
        build_video_file({**base, "channels": 2}, "train")
    with pytest.raises(ValueError, match="unknown dataset key.*dataset.fps"):
        build_video_file({**base, "fps": 5}, "train")
    with pytest.raises(ValueError, match="no test clip of 40 frames fits"):
        build_video_file({**base, "context_frames": 20, "future_frames": 20}, "test")
    with pytest.raises(ValueError, match="unknown video_file split"):
        build_video_file(base, "val")


def test_real_configs_compose_and_build_through_the_registry(video, tmp_path):
    assert compose_config(["dataset=video_file"]).dataset == OmegaConf.structured(VideoFileConfig)
    small = [f"dataset.path={video}", f"dataset.cache_dir={tmp_path}", "dataset.image_size=8",
             "dataset.context_frames=2", "dataset.future_frames=2"]
    cfg = compose_config(["dataset=video_file", *small])
    ds = build_dataset(cfg.dataset, "train")
    assert isinstance(ds, VideoFileDataset) and ds[0]["frames"].shape == (4, 3, 8, 8)
    film = compose_config(["dataset=steamboat_willie"]).dataset
    assert (film.name, film.channels, film.shot_cuts, film.frame_stride, film.image_size, film.path) == \
        ("steamboat_willie", 1, True, None, 64, None)
    film = compose_config(["dataset=steamboat_willie", *small]).dataset
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        test = build_dataset(film, "test")
    assert test[0]["frames"].shape == (4, 1, 8, 8) and test.fps == [pytest.approx(12.0)]
