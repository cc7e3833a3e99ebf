"""FVD (futurelat/evaluation/fvd.py) and its I3D (futurelat/evaluation/i3d.py), on random weights.

Most clips run I3D at 32 px (``resize_to=32``) and 9 frames; one test runs the reference 224 px."""

from __future__ import annotations

import logging
import math
import pickle

import pytest
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from futurelat.evaluation.fvd import (
    SKIP_NOTE,
    FrechetVideoDistance,
    default_cache_dir,
    find_cached_i3d,
    frechet_distance,
    frechet_distance_of_features,
    gaussian_stats,
    load_i3d,
    maybe_fvd,
)
from futurelat.evaluation.i3d import MIN_FRAMES, InceptionI3d, TorchScriptI3D, i3d_from_file, i3d_from_state_dict

SMALL = 32


@pytest.fixture(scope="module")
def i3d() -> InceptionI3d:
    torch.manual_seed(0)
    return InceptionI3d()


def make_clips(n: int, t: int = MIN_FRAMES, c: int = 3, size: int = 16, seed: int = 0) -> Tensor:
    """``(n, t, c, size, size)`` in [0, 1]: a random image per clip drifting one pixel a frame, plus noise."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 1, c, size, size, generator=g)
    frames = torch.cat([base.roll(k, dims=-1) for k in range(t)], dim=1)
    return (0.8 * frames + 0.2 * torch.rand(frames.shape, generator=g)).clamp(0, 1)


# --------------------------------------------------------------------------- the port's state-dict layout

def port_state_shapes(num_classes: int = 400) -> dict[str, tuple[int, ...]]:
    """Key → shape of piergiaj/pytorch-i3d's ``InceptionI3d(num_classes)`` state dict (without
    ``num_batches_tracked``), written out from that port's constructor."""
    units = {"Conv3d_1a_7x7": (3, 64, 7), "Conv3d_2b_1x1": (64, 64, 1), "Conv3d_2c_3x3": (64, 192, 3)}
    mixed = {
        "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
        "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
        "Mixed_4b": (128 + 192 + 96 + 64, (192, 96, 208, 16, 48, 64)),
        "Mixed_4c": (192 + 208 + 48 + 64, (160, 112, 224, 24, 64, 64)),
        "Mixed_4d": (160 + 224 + 64 + 64, (128, 128, 256, 24, 64, 64)),
        "Mixed_4e": (128 + 256 + 64 + 64, (112, 144, 288, 32, 64, 64)),
        "Mixed_4f": (112 + 288 + 64 + 64, (256, 160, 320, 32, 128, 128)),
        "Mixed_5b": (256 + 320 + 128 + 128, (256, 160, 320, 32, 128, 128)),
        "Mixed_5c": (256 + 320 + 128 + 128, (384, 192, 384, 48, 128, 128)),
    }
    for name, (cin, w) in mixed.items():
        units.update({f"{name}.b0": (cin, w[0], 1), f"{name}.b1a": (cin, w[1], 1), f"{name}.b1b": (w[1], w[2], 3),
                      f"{name}.b2a": (cin, w[3], 1), f"{name}.b2b": (w[3], w[4], 3), f"{name}.b3b": (cin, w[5], 1)})
    shapes = {}
    for prefix, (cin, cout, k) in units.items():
        shapes[f"{prefix}.conv3d.weight"] = (cout, cin, k, k, k)
        shapes.update({f"{prefix}.bn.{s}": (cout,) for s in ("weight", "bias", "running_mean", "running_var")})
    shapes.update({"logits.conv3d.weight": (num_classes, 1024, 1, 1, 1), "logits.conv3d.bias": (num_classes,)})
    return shapes


def port_state_dict(num_classes: int = 400, seed: int = 0) -> dict[str, Tensor]:
    """Random tensors under the port's keys, as its 2018 ``rgb_imagenet.pt`` (no ``num_batches_tracked``)."""
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.rand(shape, generator=g) + 0.5 if k.endswith("running_var") else
                0.05 * torch.randn(shape, generator=g)) for k, shape in port_state_shapes(num_classes).items()}


@pytest.fixture(scope="module")
def port_state() -> dict[str, Tensor]:
    return port_state_dict()


@pytest.fixture(scope="module")
def port_file(tmp_path_factory, port_state) -> tuple:
    path = tmp_path_factory.mktemp("weights") / "rgb_imagenet.pt"
    torch.save(port_state, path)
    return path, port_state


def test_state_dict_keys_and_shapes_are_the_ports(i3d):
    ours = {k: tuple(v.shape) for k, v in i3d.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert ours == port_state_shapes()
    assert sum(p.numel() for p in i3d.parameters()) == 12_697_264


def test_port_file_loads_strictly_with_weights_only(port_file):
    path, state = port_file
    model = load_i3d(path)
    assert isinstance(model, InceptionI3d) and not model.training
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


@pytest.mark.parametrize("variant", ["safetensors", "legacy_format", "nested_data_parallel", "600_classes"])
def test_other_state_dict_layouts_load(tmp_path, port_state, variant):
    state = dict(port_state)
    if variant == "600_classes":
        state.update({k: torch.zeros(shape) for k, shape in port_state_shapes(600).items() if k.startswith("logits")})
    path = tmp_path / ("i3d.safetensors" if variant == "safetensors" else "i3d.pt")
    if variant == "safetensors":
        save_file(state, str(path))
    else:
        saved = {"nested_data_parallel": {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}
                 }.get(variant, state)
        torch.save(saved, path, _use_new_zipfile_serialization=variant != "legacy_format")  # 2018's format
    model = i3d_from_file(path)
    assert torch.equal(model.state_dict()["Mixed_5c.b3b.bn.running_var"], state["Mixed_5c.b3b.bn.running_var"])
    assert model.feature_dims == {"logits": 600 if variant == "600_classes" else 400, "pool": 1024}


class _Payload:
    """A pickled object a weights-only load must refuse."""


def test_files_with_other_objects_or_keys_are_refused(tmp_path, port_state):
    torch.save({"Conv3d_1a_7x7.conv3d.weight": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(pickle.UnpicklingError):
        i3d_from_file(tmp_path / "evil.pt")
    partial = {k: v for k, v in port_state.items() if k != "Mixed_4c.b2b.bn.bias"}
    with pytest.raises(ValueError, match="Missing key.*Mixed_4c.b2b.bn.bias"):
        i3d_from_state_dict(partial)
    flow = {**port_state, "Conv3d_1a_7x7.conv3d.weight": torch.zeros(64, 2, 7, 7, 7)}
    with pytest.raises(ValueError, match="optical-flow"):
        i3d_from_state_dict(flow)


class _StyleGANVStandIn(nn.Module):
    """The call signature of StyleGAN-V's ``i3d_torchscript.pt``, with a tiny body."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 400)

    def forward(self, x: Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> Tensor:
        if rescale:
            x = x / 127.5 - 1
        y = self.proj(x.mean(dim=(2, 3, 4)))
        return y if return_features else y.softmax(dim=-1)


@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")
def test_torchscript_file_is_wrapped_or_refused(tmp_path):
    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(_StyleGANVStandIn()).save(str(path))
    model = load_i3d(path)
    assert isinstance(model, TorchScriptI3D)
    fvd = FrechetVideoDistance(model, resize_to=SMALL)
    clips = make_clips(3)
    expected = model.module(fvd.preprocess(clips), rescale=False, resize=False, return_features=True)
    assert torch.allclose(fvd.features(clips), expected.double())
    with pytest.raises(ValueError, match="features must be one of"):
        FrechetVideoDistance(model, features="pool")
    with pytest.raises(ValueError, match="TorchScript"):
        load_i3d(path, allow_torchscript=False)


# --------------------------------------------------------------------------- where weights come from

def test_missing_weights_name_the_key_and_the_cache(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_i3d(None, cache_dir=tmp_path)
    message = str(err.value)
    assert "eval.fvd_weights" in message and str(tmp_path) in message and "rgb_imagenet.pt" in message
    with pytest.raises(FileNotFoundError, match=r"eval\.fvd_weights=.*missing\.pt: no such file"):
        load_i3d(tmp_path / "missing.pt")


def test_cache_dir_follows_torch_home(tmp_path, monkeypatch, port_file):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "futurelat"
    assert find_cached_i3d() is None
    (tmp_path / "futurelat").mkdir()
    (tmp_path / "futurelat" / "rgb_imagenet.pt").symlink_to(port_file[0])
    assert find_cached_i3d() == tmp_path / "futurelat" / "rgb_imagenet.pt"
    assert isinstance(load_i3d(), InceptionI3d)
    with pytest.raises(FileNotFoundError, match="the folder"):  # a folder is searched like the cache
        load_i3d(tmp_path)


def test_maybe_fvd_skips_with_a_note_or_builds_the_metric(tmp_path, caplog, port_file):
    with caplog.at_level(logging.INFO, logger="futurelat.evaluation.fvd"):
        assert maybe_fvd(None, cache_dir=tmp_path) is None
    assert "FVD skipped: no I3D weights (set eval.fvd_weights=PATH)" == SKIP_NOTE
    assert [r.getMessage() for r in caplog.records] == [f"{SKIP_NOTE}; none cached in {tmp_path}"]
    fvd = maybe_fvd(port_file[0], cache_dir=tmp_path, resize_to=SMALL)
    assert isinstance(fvd, FrechetVideoDistance) and fvd.dim == 400
    with pytest.raises(FileNotFoundError):
        maybe_fvd(tmp_path / "missing.pt")


# --------------------------------------------------------------------------- I3D and the metric

def test_reference_size_gives_one_window(i3d):
    """224 px, 16 frames: the (2, 7, 7) average pool covers the whole 2 x 7 x 7 grid once."""
    x = torch.rand(1, 3, 16, 224, 224, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        pooled = i3d.pooled(x)
    assert pooled.shape == (1, 1024, 1, 1, 1) and torch.isfinite(pooled).all() and pooled.std() > 0.01


def test_forward_averages_the_logits_of_the_windows(i3d):
    """40 frames: 5 time steps after Mixed_5c, 4 windows of 2; forward = their mean logits."""
    x = torch.rand(2, 3, 40, SMALL, SMALL, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        pooled = i3d.pooled(x)
        windows = i3d.logits(pooled)
        logits, features = i3d(x), i3d(x, "pool")
    assert pooled.shape == (2, 1024, 4, 1, 1)
    assert torch.allclose(logits, windows.mean(dim=(2, 3, 4)), atol=1e-5)
    assert torch.allclose(features, pooled.mean(dim=(2, 3, 4)), atol=1e-6)


@pytest.mark.parametrize("features,dim", [("logits", 400), ("pool", 1024)])
def test_feature_shapes(i3d, features, dim):
    fvd = FrechetVideoDistance(i3d, features=features, resize_to=SMALL, chunk_size=2)
    feats = fvd.features(make_clips(3))
    assert feats.shape == (3, dim) and feats.dtype == torch.float64 and feats.std() > 0.01


def test_gray_clips_are_repeated_to_rgb(i3d):
    fvd = FrechetVideoDistance(i3d, resize_to=SMALL)
    gray = make_clips(2, c=1)
    assert torch.equal(fvd.features(gray), fvd.features(gray.expand(-1, -1, 3, -1, -1)))


@pytest.mark.parametrize("shape", [(2, MIN_FRAMES - 1, 3, 16, 16), (2, MIN_FRAMES, 2, 16, 16), (2, 3, 16, 16)])
def test_bad_clips_are_refused_naming_the_shape(i3d, shape):
    fvd = FrechetVideoDistance(i3d, resize_to=SMALL)
    with pytest.raises(ValueError, match=r"got.*shape[ =]\(" + ", ".join(map(str, shape)) + r"\)"):
        fvd.update(torch.rand(shape), None)


def test_identical_sets_score_zero_and_batches_stream(i3d):
    fvd = FrechetVideoDistance(i3d, resize_to=SMALL, chunk_size=3)
    real, fake = make_clips(4, seed=1), make_clips(4, seed=2)
    fvd.update(real[:2], fake[:2])
    fvd.update(real[2:], fake[2:])
    assert (fvd.num_real, fvd.num_fake) == (4, 4)
    streamed = fvd.compute()
    real_features = fvd.features(real)
    whole = frechet_distance_of_features(real_features, fvd.features(fake))
    assert streamed == pytest.approx(whole, rel=1e-5)  # batches differ by float32 conv round-off only
    assert streamed > 0
    fvd.reset()
    fvd.update(real[:3], real[:3])
    scale = gaussian_stats(real_features)[1].trace().item()
    assert fvd.compute() == pytest.approx(0.0, abs=1e-6 * scale)
    fvd.reset()
    fvd.update(real[:1], None)
    with pytest.raises(ValueError, match="at least 2 real"):
        fvd.compute()


# --------------------------------------------------------------------------- the Fréchet distance

def _random_cov(d: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_frechet_distance_matches_closed_forms():
    # 1-D: N(0, 1) vs N(m, s^2) → m^2 + (1 - s)^2
    one = torch.ones(1, 1, dtype=torch.float64)
    assert frechet_distance(torch.zeros(1), one, torch.tensor([2.0]), 9 * one) == pytest.approx(4 + 4)
    # diagonal (commuting) covariances → |dm|^2 + sum (sqrt a - sqrt b)^2
    a, b = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([4.0, 1.0, 0.25])
    m1, m2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    expected = (m1 - m2).square().sum() + (a.sqrt() - b.sqrt()).square().sum()
    assert frechet_distance(m1, a.diag(), m2, b.diag()) == pytest.approx(expected.item(), rel=1e-12)


def test_frechet_distance_agrees_with_scipy_sqrtm_and_is_symmetric():
    linalg = pytest.importorskip("scipy.linalg")
    d = 16
    s1, s2 = _random_cov(d, 0), _random_cov(d, 1)
    m1, m2 = torch.randn(d, dtype=torch.float64), torch.randn(d, dtype=torch.float64)
    root = linalg.sqrtm((s1 @ s2).numpy()).real
    expected = ((m1 - m2).square().sum() + s1.trace() + s2.trace()).item() - 2 * root.trace()
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(frechet_distance(m2, s2, m1, s1), rel=1e-12)


def test_frechet_distance_grows_with_a_mean_shift():
    d = 8
    s = _random_cov(d, 2)
    m = torch.zeros(d, dtype=torch.float64)
    u = torch.ones(d, dtype=torch.float64) / math.sqrt(d)
    values = [frechet_distance(m, s, m + c * u, s) for c in (0.0, 0.5, 1.0, 2.0)]
    assert values == pytest.approx([0.0, 0.25, 1.0, 4.0], abs=1e-9)


def test_sampled_features_approach_the_closed_form():
    """Features drawn from two known Gaussians: the estimate is near the exact distance."""
    g = torch.Generator().manual_seed(0)
    d, n = 4, 20_000
    s1, s2 = _random_cov(d, 3), _random_cov(d, 4)
    m1, m2 = torch.zeros(d, dtype=torch.float64), torch.full((d,), 0.5, dtype=torch.float64)
    x1 = m1 + torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(s1).T
    x2 = m2 + torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(s2).T
    exact = frechet_distance(m1, s1, m2, s2)
    assert frechet_distance_of_features(x1, x2) == pytest.approx(exact, rel=0.05)
    assert frechet_distance_of_features(x1, x1 + 1.0) == pytest.approx(d * 1.0, rel=1e-9)
