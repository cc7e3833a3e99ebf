"""Kinetics: annotations, layouts, labels, clip sampling, skipped videos, builder, toy generator.

Test videos encode their frame index: frame ``t`` is a uniform grey of level ``16 + 7 t``, so
the source index of every clip frame can be read back from its mean.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from futurelat.config.dataset import KineticsConfig
from futurelat.datasets import build_dataset
from futurelat.datasets.kinetics import (Kinetics, SkippedVideoWarning, build_kinetics,
                                         clip_indices, read_annotations, resize_center_crop)
from futurelat.datasets.toy_videos import CLASSES, main as toy_main, make_toy_kinetics, render_clip
from futurelat.datasets.video_io import decord_available, read_frames, write_video

from composing import compose_config

HEADER = ["label", "youtube_id", "time_start", "time_end", "split"]
#: (label, youtube_id, time_start, frames): sorted labels -> abseiling 0, making tea 1, zebra dancing 2.
ROWS = [("zebra dancing", "zzzzzzzzzz1", 10, 30), ("abseiling", "-aaaaaaaaa2", 0, 30),
        ("making tea", "mmmmmmmmm_3", 125, 30), ("abseiling", "aaaaaaaaaa4", 7, 30)]


def _name(yid: str, start: int) -> str:
    return f"{yid}_{start:06d}_{start + 10:06d}.mp4"


def _write_indexed_clip(path: Path, num_frames: int, fps: float = 10.0, height: int = 32, width: int = 64) -> None:
    levels = 16 + 7 * np.arange(num_frames)
    frames = np.broadcast_to(levels[:, None, None, None], (num_frames, height, width, 3)).astype(np.uint8)
    write_video(path, frames, fps=fps, crf=10)


def _frame_ids(frames: torch.Tensor) -> list[int]:
    """Source frame indices of a ``(T, 3, S, S)`` clip of :func:`_write_indexed_clip` frames."""
    return ((frames.mean(dim=(1, 2, 3)) * 255 - 16) / 7).round().int().tolist()


def _write_csv(path: Path, rows, split: str = "train") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for label, yid, start, _ in rows:
            w.writerow([label, yid, start, start + 10, split])
    return path


def _make(root: Path, rows=ROWS, layout: str = "per_class", csv_name: str = "train.csv", fps: float = 10.0) -> Path:
    """Write ``rows``' videos under ``root`` (flat or in label folders) and their CSV; returns the CSV."""
    for label, yid, start, frames in rows:
        folder = root / label if layout == "per_class" else root
        _write_indexed_clip(folder / _name(yid, start), frames, fps=fps)
    return _write_csv(root / "annotations" / csv_name, rows)


def _ds(root: Path, csv_path: Path, **kw) -> Kinetics:
    kw = {"num_frames": 4, "frame_stride": 2, "image_size": 16, "backend": "pyav", **kw}
    return Kinetics(root, csv_path, **kw)


@pytest.fixture(scope="module")
def per_class(tmp_path_factory):
    root = tmp_path_factory.mktemp("k_per_class")
    return root, _make(root)


# ------------------------------------------------------------------------ annotations


def test_read_annotations(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("label,youtube_id,time_start,time_end,split\nabseiling,-abc_DEF123,14.0,24,train\n")
    (row,) = read_annotations(path)
    assert (row.label, row.youtube_id, row.time_start, row.time_end) == ("abseiling", "-abc_DEF123", 14, 24)
    assert row.stem == "-abc_DEF123_000014_000024"
    path.write_text("label,id,time_start,time_end\nx,y,1,2\n")
    with pytest.raises(ValueError, match=r"a\.csv: missing column\(s\) youtube_id"):
        read_annotations(path)
    path.write_text("label,youtube_id,time_start,time_end,split\nx,abc,1,2,t\nx,abc,one,2,t\n")
    with pytest.raises(ValueError, match=r"a\.csv, line 3: malformed row"):
        read_annotations(path)
    path.write_text("label,youtube_id,time_start,time_end,split\n")
    with pytest.raises(ValueError, match="no rows"):
        read_annotations(path)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_annotations(tmp_path / "nope.csv")


# ------------------------------------------------------------------ layouts and labels


def test_flat_and_per_class_layouts_give_the_same_items(per_class, tmp_path):
    root, csv_path = per_class
    flat_csv = _make(tmp_path, layout="flat")
    a, b = _ds(root, csv_path), _ds(tmp_path, flat_csv)
    assert len(a) == len(b) == len(ROWS) and a.num_skipped == b.num_skipped == 0
    assert a.videos[0] == "zebra dancing/" + _name("zzzzzzzzzz1", 10)
    assert b.videos[0] == _name("zzzzzzzzzz1", 10)
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert x["video"] == a.videos[i] and y["video"] == b.videos[i] and x["index"] == y["index"] == i
        assert x["label"] == y["label"]
        torch.testing.assert_close(x["frames"], y["frames"])


def test_label_mapping_sorted_names(per_class):
    ds = _ds(*per_class)
    assert ds.classes == ["abseiling", "making tea", "zebra dancing"]
    assert [ds[i]["label"] for i in range(len(ds))] == [2, 0, 1, 0]


def test_rows_without_a_label_get_minus_one(tmp_path):
    _make(tmp_path, ROWS[:2])
    path = tmp_path / "unlabelled.csv"
    path.write_text("youtube_id,time_start,time_end\nzzzzzzzzzz1,10,20\n")
    ds = _ds(tmp_path, path, classes=["abseiling", "zebra dancing"])
    assert ds[0]["label"] == -1 and ds.classes == ["abseiling", "zebra dancing"]


def test_builder_uses_the_union_of_split_labels(tmp_path):
    train = [r for r in ROWS if r[0] != "abseiling"]  # train lacks 'abseiling'; test has only it
    test = [r for r in ROWS if r[0] == "abseiling"]
    _make(tmp_path, train, csv_name="train.csv")
    _make(tmp_path, test, csv_name="val.csv")
    cfg = {"root": str(tmp_path), "annotations_dir": str(tmp_path / "annotations"),
           "csv": {"train": "train.csv", "test": "val.csv"}, "context_frames": 2, "future_frames": 2,
           "image_size": 16, "backend": "pyav"}
    tr, te = build_kinetics(cfg, "train"), build_kinetics(cfg, "test")
    assert tr.classes == te.classes == ["abseiling", "making tea", "zebra dancing"]
    assert [te[i]["label"] for i in range(len(te))] == [0, 0]
    assert tr[0]["label"] == 2 and tr.train and not te.train


# ------------------------------------------------------------------------ clip sampling


def test_clip_length_stride_and_eval_positions(per_class):
    root, csv_path = per_class
    center = _ds(root, csv_path, num_frames=5, frame_stride=3)  # spans 13 of 30 frames: starts 0..17
    item = center[0]
    assert item["frames"].shape == (5, 3, 16, 16) and item["frames"].dtype == torch.float32
    assert 0 <= item["frames"].min() and item["frames"].max() <= 1
    assert _frame_ids(item["frames"]) == [8, 11, 14, 17, 20]  # centred: start 17 // 2
    start = _ds(root, csv_path, num_frames=5, frame_stride=3, eval_clip="start")
    assert _frame_ids(start[0]["frames"]) == [0, 3, 6, 9, 12]
    again = _ds(root, csv_path, num_frames=5, frame_stride=3)
    torch.manual_seed(1)
    torch.testing.assert_close(again[0]["frames"], item["frames"], rtol=0, atol=0)  # eval clips are fixed


def test_target_fps_sets_the_step(tmp_path):
    csv_path = _make(tmp_path, ROWS[:1], fps=20.0)
    ds = _ds(tmp_path, csv_path, num_frames=4, frame_stride=None, target_fps=5.0, eval_clip="start")
    assert _frame_ids(ds[0]["frames"]) == [0, 4, 8, 12]
    assert clip_indices(30, 4, 2.5, 1) == [1, 4, 6, 9]  # fractional steps round half up
    with pytest.raises(ValueError, match="exactly one of frame_stride and target_fps"):
        _ds(tmp_path, csv_path, frame_stride=2, target_fps=5.0)


def test_train_clips_start_at_random_offsets(per_class):
    ds = _ds(*per_class, num_frames=4, frame_stride=2, train=True)  # spans 7 of 30 frames: starts 0..23

    def starts():
        return [_frame_ids(ds[1]["frames"])[0] for _ in range(12)]

    torch.manual_seed(0)
    first = starts()
    torch.manual_seed(0)
    assert starts() == first  # reproducible from torch's RNG
    assert len(set(first)) >= 5 and min(first) >= 0 and max(first) <= 23
    ids = _frame_ids(ds[1]["frames"])
    assert [b - a for a, b in zip(ids, ids[1:])] == [2, 2, 2]


def test_short_videos_pad_or_skip(tmp_path):
    rows = [("abseiling", "short000001", 0, 5), ("abseiling", "long0000002", 0, 30)]
    csv_path = _make(tmp_path, rows)
    pad = _ds(tmp_path, csv_path, num_frames=4, frame_stride=2)
    assert _frame_ids(pad[0]["frames"]) == [0, 2, 4, 4]  # the last frame repeats
    skip = _ds(tmp_path, csv_path, num_frames=4, frame_stride=2, short_videos="skip")
    with pytest.warns(SkippedVideoWarning, match="short000001.*5 frames"):
        item = skip[0]
    assert item["index"] == 1 and "long0000002" in item["video"] and skip.num_skipped == 1


def test_resize_center_crop():
    frames = torch.zeros(2, 3, 20, 40, dtype=torch.uint8)
    frames[..., 10:30] = 255  # the central 20 columns are white, the sides black
    out = resize_center_crop(frames, 10)
    assert out.shape == (2, 3, 10, 10) and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.ones_like(out))
    frames[..., 10:30] = 0
    frames[..., 15:25] = 255  # the middle half of the square
    out = resize_center_crop(frames.float() / 255, 4)  # antialiasing blurs the edges a little
    left, mid_left, mid_right, right = out[0, 0, 0].tolist()
    assert max(left, right) < 0.2 and min(mid_left, mid_right) > 0.8


# --------------------------------------------------------------------- skipped videos


def test_corrupt_video_is_replaced_warned_once_and_counted(tmp_path):
    csv_path = _make(tmp_path, ROWS)
    bad = tmp_path / "abseiling" / _name("-aaaaaaaaa2", 0)
    bad.write_bytes(bad.read_bytes()[:300])  # truncated: the mp4 index at the end is gone
    ds = _ds(tmp_path, csv_path)
    with pytest.warns(SkippedVideoWarning, match=r"unreadable video .*-aaaaaaaaa2_000000_000010\.mp4"):
        item = ds[1]
    assert item["index"] == 2 and item["video"] == ds.videos[2]  # replaced by the next index
    assert ds.num_skipped == 1 and list(ds.unreadable) == [f"abseiling/{_name('-aaaaaaaaa2', 0)}"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning: the bad file is remembered
        assert ds[1]["index"] == 2
    assert ds.num_skipped == 1


@pytest.mark.skipif(not decord_available(), reason="decord not installed")
def test_backends_give_the_same_items(per_class):
    a = _ds(*per_class, backend="pyav")
    b = _ds(*per_class, backend="decord")
    for i in (0, 2):
        assert (a[i]["frames"] - b[i]["frames"]).abs().max() < 3 / 255


def test_missing_videos_are_dropped_counted_and_warned(tmp_path):
    _make(tmp_path, ROWS[:2])
    csv_path = _write_csv(tmp_path / "annotations" / "all.csv", ROWS)  # rows 3 and 4 have no file
    with pytest.warns(SkippedVideoWarning, match=r"2 of 4 videos listed in .*all\.csv are missing") as record:
        ds = _ds(tmp_path, csv_path)
    assert len(record) == 1 and len(ds) == 2 and ds.num_skipped == 2
    assert ds.missing == [_name("mmmmmmmmm_3", 125), _name("aaaaaaaaaa4", 7)]


def test_nothing_readable_is_a_clear_error(tmp_path):
    csv_path = _write_csv(tmp_path / "train.csv", ROWS)
    with pytest.raises(FileNotFoundError) as err:
        _ds(tmp_path, csv_path)
    assert str(tmp_path) in str(err.value) and "train.csv" in str(err.value)
    for label, yid, start, _ in ROWS:  # every file present but corrupt
        (tmp_path / _name(yid, start)).write_bytes(b"not a video" * 50)
    ds = _ds(tmp_path, csv_path)
    with pytest.warns(SkippedVideoWarning), pytest.raises(ValueError, match="no readable video") as err:
        ds[0]
    assert str(tmp_path) in str(err.value) and "train.csv" in str(err.value) and len(ds.unreadable) == 4
    with pytest.raises(FileNotFoundError, match="nowhere"):
        _ds(tmp_path / "nowhere", csv_path)


def test_dataloader_batches_with_workers(per_class):
    ds = _ds(*per_class)
    batch = next(iter(DataLoader(ds, batch_size=2, num_workers=2)))
    assert batch["frames"].shape == (2, 4, 3, 16, 16) and batch["label"].tolist() == [2, 0]
    assert batch["video"] == ds.videos[:2] and batch["index"].tolist() == [0, 1]


# ---------------------------------------------------------------------------- config


def test_yaml_and_code_agree_and_compose(tmp_path, per_class):
    # The yaml sets nothing but the schema, whose defaults the builder also fills in.
    assert compose_config(["dataset=kinetics_400"]).dataset == OmegaConf.structured(KineticsConfig)
    root, _ = per_class
    cfg = compose_config(["dataset=kinetics_400", f"dataset.root={root}", "dataset.csv.test=train.csv",
                          f"dataset.annotations_dir={root / 'annotations'}", "dataset.image_size=16",
                          "dataset.context_frames=2", "dataset.future_frames=2", "dataset.backend=pyav"])
    ds = build_dataset(cfg.dataset, "test")
    assert isinstance(ds, Kinetics) and ds[0]["frames"].shape == (4, 3, 16, 16)


def test_builder_errors_name_the_key(per_class):
    root, _ = per_class
    base = {"root": str(root), "annotations_dir": str(root / "annotations"), "csv": {"train": "train.csv"}}
    with pytest.raises(ValueError, match="dataset.root is not set"):
        build_kinetics({**base, "root": None}, "train")
    with pytest.raises(ValueError, match="dataset.frame_stride and dataset.target_fps"):
        build_kinetics({**base, "target_fps": 15}, "train")
    with pytest.raises(ValueError, match="unknown dataset key.*dataset.fps"):
        build_kinetics({**base, "fps": 15}, "train")
    with pytest.raises(ValueError, match="dataset.eval_clip must be center or start"):
        build_kinetics({**base, "eval_clip": "end"}, "train")
    with pytest.raises(ValueError, match="dataset.csv.test is not set"):
        build_kinetics(base, "test")
    with pytest.raises(FileNotFoundError, match="val.csv"):
        build_kinetics({**base, "csv": {"train": "train.csv", "test": "val.csv"}}, "test")


# ------------------------------------------------------------------------ toy videos


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    counts = make_toy_kinetics(out, num_train=6, num_test=3, frames=12, size=32, seed=0, corrupt=2, missing=1)
    return out, counts


def test_toy_generator_gives_a_readable_dataset(toy):
    out, counts = toy
    assert counts == {"train": 6, "test": 3, "corrupt": 2, "missing": 1}
    cfg = compose_config(["dataset=toy_kinetics", f"dataset.root={out}", "dataset.image_size=32",
                          "dataset.context_frames=4", "dataset.future_frames=4"]).dataset
    with pytest.warns(SkippedVideoWarning, match="1 of 9 videos"):
        train = build_dataset(cfg, "train")
    test = build_dataset(cfg, "test")
    assert train.classes == test.classes == sorted(CLASSES) and len(test) == 3 and len(train) == 8
    with pytest.warns(SkippedVideoWarning):
        items = [train[i] for i in range(len(train))]
    assert train.num_skipped == 3 and len(train.unreadable) == 2
    for item in items + [test[i] for i in range(len(test))]:
        assert item["frames"].shape == (8, 3, 32, 32)
        folder = item["video"].split("/")[1].replace("_", " ")
        assert CLASSES.index(folder) == item["label"]  # the label is the class folder


def test_toy_generator_is_deterministic(toy, tmp_path):
    out, _ = toy
    toy_main([str(tmp_path), "--num-train", "2", "--num-test", "0", "--frames", "12", "--size", "32"])
    assert (tmp_path / "annotations" / "train.csv").read_text().splitlines()[1:3] == \
        (out / "annotations" / "train.csv").read_text().splitlines()[1:3]
    name = read_annotations(tmp_path / "annotations" / "train.csv")[0]
    a = read_frames(next(tmp_path.rglob(f"{name.stem}.mp4")), range(12), backend="pyav")
    b = read_frames(next(out.rglob(f"{name.stem}.mp4")), range(12), backend="pyav")
    assert torch.equal(a, b)


@pytest.mark.parametrize("label", CLASSES)
def test_toy_motion_is_predictable(label):
    """The object moves every frame at constant speed: for the ball and the square, extrapolating
    the object's centre at constant velocity is far closer than keeping it where it was
    (copy-last); the bar turns by about the same angle every frame."""
    video = render_clip(label, np.random.default_rng(3), frames=24, size=64).astype(np.float64)
    assert np.array_equal(video, render_clip(label, np.random.default_rng(3), frames=24, size=64))
    step = ((video[1:] - video[:-1]) ** 2).mean((1, 2, 3))
    assert step.min() > 0.2 * step.mean() > 0  # it moves, every frame
    # Soft object mask: distance from the (static) background, scaled by its peak over time.
    d = np.abs(video - np.median(video, axis=0)).sum(-1)  # (T, S, S)
    peak = d.max(0)
    w = np.where(peak > 30, d / np.maximum(peak, 1e-9), 0)
    ys, xs = np.mgrid[0:64, 0:64]
    mass = w.sum((1, 2))
    cy, cx = (w * ys).sum((1, 2)) / mass, (w * xs).sum((1, 2)) / mass  # (T,) centres
    if label == "rotating bar":  # orientation from the second moments of the mask
        dy, dx = ys - cy[:, None, None], xs - cx[:, None, None]
        mu20, mu02, mu11 = (w * dx * dx).sum((1, 2)), (w * dy * dy).sum((1, 2)), (w * dx * dy).sum((1, 2))
        turn = np.diff(np.unwrap(np.arctan2(2 * mu11, mu20 - mu02))) / 2  # (T - 1,) radians per frame
        assert abs(turn.mean()) > 0.05 and np.all(np.sign(turn) == np.sign(turn.mean()))
        assert turn.std() < 0.35 * abs(turn.mean()), turn
        return
    centre = np.stack([cy, cx], -1)
    linear = np.linalg.norm(centre[2:] - (2 * centre[1:-1] - centre[:-2]), axis=-1).mean()
    copy_last = np.linalg.norm(centre[2:] - centre[1:-1], axis=-1).mean()
    assert copy_last > 1.0 and linear < 0.5 * copy_last, (linear, copy_last)


@pytest.mark.parametrize("label", CLASSES)
def test_toy_speed_range_scales_the_motion(label):
    """``speed`` sets how far the object moves per frame: (0, 0) freezes it, a faster range moves it more."""
    def mean_step(speed):
        video = render_clip(label, np.random.default_rng(4), frames=8, size=64, speed=speed).astype(np.float64)
        return np.abs(np.diff(video, axis=0)).mean()

    assert mean_step((0.0, 0.0)) == 0
    assert 0 < mean_step((0.5, 1.0)) < mean_step((1.5, 3.0))
    with pytest.raises(ValueError, match=r"speed must be a \(low, high\) range.*\(2\.0, 1\.0\)"):
        render_clip(label, np.random.default_rng(0), speed=(2.0, 1.0))
    with pytest.raises(ValueError, match="speed"):
        toy_main(["unused_dir", "--speed", "-1", "1"])
