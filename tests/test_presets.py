"""Every preset in configs/experiment/ runs its tiny variant end to end (``+experiment=NAME
+debug=tiny``): train, evaluate, finite metrics. Slow (all presets, ~10 s to a minute each): run with
``pytest -m slow tests/test_presets.py``. The default suite composes and builds every preset
(tests/test_configs.py) and runs the default job and the V-JEPA 2 path (test_main, test_vjepa2_pipeline)."""

from __future__ import annotations

import math

import pytest

from composing import EXPERIMENTS, compose_config
from futurelat.cache import run_cache
from futurelat.datasets.toy_videos import make_toy_kinetics
from futurelat.main import run

#: V-JEPA 2 presets read a latent cache: the tiny random V-JEPA 2 (no hub weights), no Moving MNIST sizes.
VJEPA2 = ["debug/backbone@backbone=none", "debug/dataset@dataset=none", "backbone=vjepa2_tiny",
          "trainer.head.max_steps=2", "head.params.sampling.steps=1"]


#: Steamboat Willie presets read a video file (the test writes one) through the tiny MAGVIT-v2, GAN from step 1.
STEAMBOAT = ["debug/backbone@backbone=magvit2_fsq", "debug/dataset@dataset=none", "dataset.image_size=32",
             "dataset.target_fps=null", "dataset.frame_stride=1", "dataset.test_fraction=0.4",
             "backbone.gan.start_step=1", "backbone.gan.perceptual.pretrained=null"]  # random ConvNeXt: no hub


@pytest.fixture(scope="module")
def film(tmp_path_factory):
    """A 64-frame 40 x 48 gray video of a bright square moving to and fro over a dark frame (no cut)."""
    import numpy as np

    from futurelat.datasets.video_io import write_video

    frames = np.zeros((64, 40, 48, 3), dtype=np.uint8)
    for t in range(64):
        x = abs(t % 72 - 36)
        frames[t, 10:22, x:x + 12] = 220
    path = tmp_path_factory.mktemp("film") / "film.mp4"
    write_video(path, frames, fps=12)
    return path


@pytest.fixture(scope="module")
def toy_videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    make_toy_kinetics(root, num_train=4, num_test=2, frames=16, corrupt=0)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_preset_runs_its_tiny_variant(experiment, tmp_path, toy_videos, film):
    overrides = [f"+experiment={experiment}", "+debug=tiny"]
    if experiment.startswith("steamboat"):
        overrides += [*STEAMBOAT, f"dataset.path={film}", f"dataset.cache_dir={tmp_path / 'frames'}"]
    if experiment.startswith("vjepa2"):
        overrides += [*VJEPA2, f"dataset.source.root={toy_videos}", f"dataset.dir={tmp_path / 'cache'}",
                      "cache.progress=false"]
        if not experiment.endswith("_tiny"):  # the full presets read Kinetics-400: the toy videos instead
            overrides.append("dataset@dataset.source=toy_kinetics")
        if experiment == "vjepa2_deterministic":  # 8 rope heads need d_model >= 48; debug/tiny's is 32
            overrides.append("head.params.num_heads=4")
        if experiment.endswith("deterministic") or experiment.endswith("deterministic_tiny"):
            overrides.remove("head.params.sampling.steps=1")
    cfg = compose_config(overrides)
    if experiment.startswith("vjepa2"):
        run_cache(cfg)
    metrics = run(cfg, tmp_path / "run")
    error = "test/l1" if experiment.startswith("vjepa2") else "test/mse"
    assert math.isfinite(metrics[error]) and metrics["test/num_sequences"] > 0, metrics
