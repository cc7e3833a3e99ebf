"""Perceptual loss: an LPIPS-style feature distance (Zhang et al. 2018) on a frozen transformers image model.

LPIPS itself needs torchvision's VGG/AlexNet, and torchvision does not import beside futurelat's torch;
any Hugging Face image model with hidden states serves instead (``convnext``, ``resnet``, ``dinov2``,
...). For each chosen hidden state, features are normalised to unit length over channels, and the
squared distance between those of the prediction and the target is summed over channels and
averaged over positions (LPIPS with unit channel weights, no learned calibration); the loss is the
mean over layers and frames, in ``[0, 4]``, 0 for identical frames.

The network is frozen: eval mode (kept by :meth:`PerceptualLoss.train`), ``requires_grad=False``, and
left out of checkpoints (it is rebuilt from its config). Gradients reach the prediction only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from futurelat.config.gan import PerceptualConfig
from futurelat.models.base import check_frames
from futurelat.utils.hub import WeightsSource, load_offline_first

log = logging.getLogger(__name__)

#: ImageNet statistics (RGB), what the pretrained image models were trained on.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: How the loading errors name these weights (:func:`futurelat.utils.hub.load_offline_first`).
WEIGHTS = WeightsSource(what="perceptual-loss weights", key="backbone.gan.perceptual.pretrained",
                        cache_key="backbone.gan.perceptual.cache_dir", saved_by="save_pretrained",
                        example=PerceptualConfig.pretrained,
                        contents="transformers model in that directory (need config.json and the weights)",
                        tail="Or train without it: backbone.gan.perceptual_weight=0.")


class PerceptualLoss(nn.Module):
    """Frames ``(B, T, C, H, W)`` in [0, 1] ×2 → LPIPS-style distance, a scalar (see the module docstring).

    Args:
        network: a transformers image model called as ``network(pixel_values=x, output_hidden_states=True)``
            on ``(N, 3, H, W)`` ImageNet-normalised images (one-channel frames are repeated to RGB).
        layers: indices of ``hidden_states`` compared (``None``: all of them).
        resize: resize frames to ``resize × resize`` first (bilinear); ``None``: as they are.
    """

    def __init__(self, network: nn.Module, layers: Sequence[int] | None = None, resize: int | None = None):
        super().__init__()
        self.network = network.eval().requires_grad_(False)
        self.layers = None if layers is None else list(layers)
        self.resize = resize
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "PerceptualLoss":
        super().train(mode)
        self.network.eval()  # frozen: never dropout or batch-norm updates
        return self

    def _features(self, frames: Tensor) -> list[Tensor]:
        check_frames(frames)
        x = rearrange(frames, "b t c h w -> (b t) c h w")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.resize is not None and x.shape[-2:] != (self.resize, self.resize):
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        hidden = self.network(pixel_values=x, output_hidden_states=True).hidden_states
        chosen = hidden if self.layers is None else [hidden[i] for i in self.layers]
        # unit length over channels: dim 1 of conv maps (N, c, h, w), the last of tokens (N, n, d)
        return [F.normalize(h.float(), dim=1 if h.ndim == 4 else -1, eps=1e-10) for h in chosen]

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ "
                             "(both (B, T, C, H, W))")
        with torch.no_grad():
            wanted = self._features(target)
        got = self._features(prediction)
        per_layer = [(g - w).square().sum(dim=1 if g.ndim == 4 else -1).mean() for g, w in zip(got, wanted)]
        return torch.stack(per_layer).mean()


# --------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------


def build_perceptual(cfg: PerceptualConfig) -> PerceptualLoss:
    """The perceptual loss of ``backbone.gan.perceptual``: pretrained weights (:func:`load_image_model`)
    or, with ``pretrained: null``, a random ``model_type`` model (:func:`random_image_model`).

    Raises:
        FileNotFoundError: pretrained weights that are neither on disk nor downloadable (the message
            says why and how to get them).
        ValueError: an unknown ``model_type``.
    """
    if cfg.pretrained:
        network = load_image_model(cfg.pretrained, cfg.cache_dir)
    else:
        network = random_image_model(cfg.model_type, cfg.config or {}, cfg.init_seed)
    return PerceptualLoss(network, layers=cfg.layers, resize=cfg.resize)


def random_image_model(model_type: str, config: dict[str, Any], seed: int = 0) -> nn.Module:
    """A randomly initialised transformers model of ``model_type`` (its config's defaults updated with
    ``config``); the weights depend on ``seed`` alone (drawn under a forked, seeded torch RNG).

    Raises:
        ValueError: ``model_type`` is not a transformers model type.
    """
    from transformers import AutoConfig, AutoModel

    try:
        model_config = AutoConfig.for_model(model_type, **config)
    except ValueError as err:
        raise ValueError(f"backbone.gan.perceptual.model_type={model_type!r}: {err}") from err
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModel.from_config(model_config)


def load_image_model(pretrained: str, cache_dir: str | None = None) -> nn.Module:
    """``AutoModel.from_pretrained`` of a local directory or a hub id, the cache first (no network), then
    a download unless offline mode is on or the Hub does not answer (then the error comes at once).

    Raises:
        FileNotFoundError: the directory does not exist or holds no model, or the hub id is not cached and
            cannot be downloaded; the message says why and how to get the weights.
    """
    from transformers import AutoModel

    return load_offline_first(lambda name, local_only: AutoModel.from_pretrained(
        name, local_files_only=local_only, cache_dir=cache_dir), pretrained, cache_dir, WEIGHTS)
