"""``python -m futurelat.predict`` on the shared tiny run (VQ-VAE + Mamba prior, 64 px Moving MNIST, 10 + 10
frames): a small video and a folder of frames, its outputs, and its errors. Run in-process through ``main``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from futurelat.datasets.video_input import InputPreprocessing, open_source, read_clip
from futurelat.datasets.video_io import VideoDecodeError, video_info, write_video
from futurelat.evaluation.panels import panels_size
from futurelat.predict import PredictionError, main

SIZE, TC, TF = 64, 10, 10  # the tiny run's dataset
FRAMES, FPS = 30, 10.0


def squares(num_frames: int, height: int, width: int) -> np.ndarray:
    """``(T, H, W, 3)`` uint8: a red and a white square moving on a dark gray background."""
    video = np.full((num_frames, height, width, 3), 30, np.uint8)
    for t in range(num_frames):
        y, x = (4 + 2 * t) % (height - 16), (6 + 3 * t) % (width - 16)
        video[t, y:y + 16, x:x + 16] = 255
        video[t, height - 20:height - 8, (5 * t) % (width - 12):(5 * t) % (width - 12) + 12] = (220, 40, 40)
    return video


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """30 frames, 96x128 at 10 fps: cropped to 96x96 and resized to the run's 64 px."""
    return write_video(tmp_path_factory.mktemp("video") / "squares.mp4", squares(FRAMES, 96, 128), fps=FPS)


@pytest.fixture(scope="module")
def frame_folder(tmp_path_factory):
    """12 PNG frames, 64x64, named so that only a sort by name orders them."""
    folder = tmp_path_factory.mktemp("frames")
    for t, frame in enumerate(squares(12, 64, 64)):
        Image.fromarray(frame).save(folder / f"frame_{t:03d}.png")
    return folder


def predict(run, video, tmp_path, *args):
    out = main(["--run", str(run), "--video", str(video), "--out", str(tmp_path / "out"), *args])
    return out, json.loads((out / "prediction.json").read_text())


def gif(path):
    with Image.open(path) as image:
        return image.n_frames, image.size


def test_video_with_truth_two_samples(tiny_run, video, tmp_path):
    out, report = predict(tiny_run, video, tmp_path, "--start-frame", "2", "--num-samples", "2")
    assert report["frames_used"] == {"context": list(range(2, 12)), "truth": list(range(12, 22))}
    assert (report["fps"], report["grayscale"], report["channels"]) == (FPS, True, 3)  # Moving MNIST: gray as RGB
    # context | sample 1 | sample 2 | truth, one GIF frame per context and future frame
    assert gif(out / "prediction.gif") == (TC + TF, panels_size(4, SIZE, SIZE))
    metrics = report["metrics"]
    assert metrics["truth_frames"] == TF and set(metrics) == {"truth_frames", "prediction", "copy_last"}
    assert set(metrics["prediction"]) == {"mse", "mae", "ssim", "psnr"} and metrics["copy_last"]["mse"] > 0
    with safe_open(out / "latents.safetensors", "pt") as f:
        shapes = {k: tuple(f.get_tensor(k).shape) for k in f.keys()}
        assert f.get_tensor("predicted_codes").dtype == torch.int64
        assert f.metadata()["start_frame"] == "2"
    n, d = shapes["context_latents"][1:]
    assert shapes == {"context_latents": (TC, n, d), "context_codes": (TC, n),
                      "predicted_latents": (2, TF, n, d), "predicted_codes": (2, TF, n)}
    assert not (out / "prediction.mp4").exists()


def test_video_ending_with_the_context_has_no_truth(tiny_run, video, tmp_path):
    out, report = predict(tiny_run, video, tmp_path, "--start", "2", "--future-frames", "4", "--format", "both")
    assert report["start_frame"] == 20 and report["truth_frames"] == 0 and report["metrics"] is None
    assert gif(out / "prediction.gif") == (TC + 4, panels_size(2, SIZE, SIZE))  # context | prediction
    assert video_info(out / "prediction.mp4").num_frames == TC + 4


def test_default_output_folder_and_partial_truth(tiny_run, video, tmp_path):
    run = tmp_path / "run"  # a copy: tests do not write into the shared run
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("*_last.pt", "wandb", "*.gif", "*.png"))
    out = main(["--run", str(run), "--video", str(video), "--start", "1.5"])
    assert out == run / "predict" / "squares_1.5s"
    report = json.loads((out / "prediction.json").read_text())
    assert report["frames_used"]["truth"] == list(range(25, 30)) and report["metrics"]["truth_frames"] == 5


def test_frame_folder(tiny_run, frame_folder, tmp_path):
    out, report = predict(tiny_run, frame_folder, tmp_path)
    assert report["source_fps"] is None and report["start_seconds"] is None
    assert report["frames_used"]["truth"] == [10, 11] and report["metrics"]["truth_frames"] == 2
    assert gif(out / "prediction.gif")[0] == TC + TF
    with pytest.raises(PredictionError, match="--fps"):
        predict(tiny_run, frame_folder, tmp_path, "--start", "0.5")


def test_preprocessing_follows_the_run_dataset(video):
    gray_rgb = InputPreprocessing.from_dataset({"name": "moving_mnist", "image_size": 64, "channels": 3})
    clip = read_clip(open_source(video), gray_rgb, 0, 3)
    assert clip.frames.shape == (3, 3, 64, 64) and torch.equal(clip.frames[:, 0], clip.frames[:, 2])
    film = InputPreprocessing.from_dataset({"name": "steamboat_willie", "image_size": 32, "channels": 1,
                                            "frame_stride": None, "target_fps": 5})
    assert (film.resize, film.grayscale, film.target_fps) == ("area", True, 5.0)
    clip = read_clip(open_source(video), film, 4, 20)  # 2 source frames per clip frame, to the end
    assert clip.frames.shape == (13, 1, 32, 32) and clip.source_indices == list(range(4, 30, 2))
    cached = InputPreprocessing.from_dataset({"name": "kinetics_400_cached", "image_size": 256, "channels": 3,
                                              "source": {"name": "kinetics_400", "image_size": 256, "channels": 3,
                                                         "frame_stride": 2, "target_fps": None}})
    assert (cached.frame_stride, cached.resize, cached.grayscale) == (2, "bilinear", False)


def test_errors_name_the_problem(tiny_run, video, frame_folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.yaml"):
        predict(tmp_path, video, tmp_path)
    half = tmp_path / "half"  # the backbone stage finished, the head did not start
    (half / "checkpoints").mkdir(parents=True)
    shutil.copy(tiny_run / "config.yaml", half)
    shutil.copy(tiny_run / "checkpoints" / "backbone_final.pt", half / "checkpoints")
    with pytest.raises(FileNotFoundError, match="the head stage did not finish: no checkpoints/head_final.pt"):
        predict(half, video, tmp_path)
    latent = tmp_path / "latent"
    latent.mkdir()
    (latent / "config.yaml").write_text((tiny_run / "config.yaml").read_text().replace("name: vqvae", "name: vjepa2"))
    with pytest.raises(PredictionError, match="backbone 'vjepa2' .* has no pixel decoder.*latent"):
        predict(latent, video, tmp_path)
    with pytest.raises(PredictionError, match=r"squares.mp4 has 30 frames at 10 fps \(3.00 s\): from frame 25 "
                                              r"\(2.50 s\) at frame_stride 1 .* 5 clip frame\(s\), fewer than the 10 "
                                              r"context frames; the last start that fits is frame 20"):
        predict(tiny_run, video, tmp_path, "--start", "2.5")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 100)
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        predict(tiny_run, broken, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no frames here")
    with pytest.raises(FileNotFoundError, match="no frames .* in the folder"):
        predict(tiny_run, empty, tmp_path)
