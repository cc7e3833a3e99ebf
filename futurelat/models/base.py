"""The two contracts every model in futurelat follows: :class:`Backbone` and :class:`Head`.

Shape notation
--------------
- ``B``: batch, ``T``: frames, ``C``: channels, ``H, W``: frame height and width (pixels).
- ``T'``: latent frames (``T / temporal_downsample``), ``N``: tokens per latent frame
  (``h * w`` for a spatial token grid), ``D``: latent channels.

- frames: ``(B, T, C, H, W)`` float in ``[0, 1]``.
- latents: ``(B, T', N, D)`` float.
- codes: ``(B, T', N)`` int64 in ``[0, codebook_size)``.

A backbone turns frames into latents (and, when it is discrete, codes) and back.
A head predicts the latents/codes of future frames from those of context frames.
:class:`futurelat.models.latent_video_model.LatentVideoModel` joins the two.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class Latents:
    """Encoded video.

    Attributes:
        latents: ``(B, T', N, D)`` float latent vectors (for a discrete backbone: the
            quantized codebook vectors).
        codes: ``(B, T', N)`` int64 codebook indices, or ``None`` for a continuous backbone.
    """

    latents: Tensor
    codes: Tensor | None = None

    def __getitem__(self, index) -> "Latents":
        """Index the time axis: ``z[:, :10]`` is written ``z[:10]`` → the first 10 latent frames."""
        codes = None if self.codes is None else self.codes[:, index]
        return Latents(self.latents[:, index], codes)

    @property
    def num_frames(self) -> int:
        return self.latents.shape[1]


@dataclass(frozen=True)
class LatentSpec:
    """What a backbone produces for a given frame size; what a head is built for.

    Attributes:
        latent_dim: ``D``.
        grid: ``(h, w)`` token grid per latent frame; ``N = h * w``.
        codebook_size: number of codes, or ``None`` for a continuous backbone.
        temporal_downsample: frames per latent frame (1 for per-frame tokenizers).
        first_frame_alone: the first frame is encoded alone into the first latent frame (a causal
            video tokenizer such as MAGVIT-v2): ``T`` frames → ``1 + (T - 1) / temporal_downsample``
            latent frames, so one tokenizer serves images and videos. Otherwise ``T / temporal_downsample``.
    """

    latent_dim: int
    grid: tuple[int, int]
    codebook_size: int | None = None
    temporal_downsample: int = 1
    first_frame_alone: bool = False

    @property
    def tokens_per_frame(self) -> int:
        return self.grid[0] * self.grid[1]

    def latent_frames(self, num_frames: int, what: str = "a clip", backbone: str = "this backbone") -> int:
        """``T'``, the latent frames of ``num_frames`` consecutive frames that start a clip.

        A later part of a clip (the future after the context) has ``latent_frames(Tc + Tf) -
        latent_frames(Tc)`` latent frames: ``Tf / temporal_downsample`` when each count is valid.

        Raises:
            ValueError: ``num_frames`` is not ``k * s`` (or ``1 + k * s`` with ``first_frame_alone``),
                ``s = temporal_downsample``; the message names ``what``, ``backbone`` and the valid counts.
        """
        s, n = self.temporal_downsample, int(num_frames)
        offset = 1 if self.first_frame_alone else 0
        if n < max(1, offset) or (n - offset) % s:
            valid = ", ".join(str(offset + k * s) for k in range(1 - offset, 5 - offset))
            rule = f"the first frame alone, then groups of {s}: 1 + k * {s}" if self.first_frame_alone \
                else f"groups of {s}: a multiple of {s}"
            raise ValueError(f"{what} has {n} frames; {backbone} encodes {rule} frames ({valid}, ...)")
        return offset + (n - offset) // s

    @property
    def discrete(self) -> bool:
        return self.codebook_size is not None


class Backbone(nn.Module, ABC):
    """Frames ↔ latents. Subclasses are listed by name in :data:`futurelat.registry.BACKBONES`, or
    named in a config by their ``"module:attr"`` path (``backbone.name: my_package.backbones:MyBackbone``).

    ``forward(frames)`` is the stage-1 (backbone) training step and returns a dict of
    scalar tensors with at least ``"loss"``; everything else in the dict is logged.

    GAN training (``backbone.gan``, :mod:`futurelat.training.gan_step`) works for any trainable backbone
    with a pixel decoder that also provides: ``forward(frames, return_reconstruction=True)``, whose dict
    adds ``"reconstruction"`` (the decoded frames, differentiable, see :meth:`forward`), and, for the
    adaptive generator weight only, :meth:`last_decoder_layer`.
    """

    #: Whether :meth:`decode` exists (V-JEPA-style encoders have no pixel decoder).
    has_decoder: bool = True
    #: Whether the backbone is trained by futurelat (stage 1) or only ever frozen.
    trainable: bool = True
    #: Whether it produces codes (a codebook) besides continuous latents.
    discrete: bool = True

    @abstractmethod
    def latent_spec(self, frame_size: tuple[int, int]) -> LatentSpec:
        """The latent shape produced for frames of ``frame_size = (H, W)`` pixels.

        Raises:
            ValueError: if frames of that size cannot be encoded (e.g. not divisible
                by the downsampling factor); the message names the size.
        """

    @abstractmethod
    def encode(self, frames: Tensor) -> Latents:
        """``(B, T, C, H, W)`` in [0, 1] → :class:`Latents` ``(B, T', N, D)`` (+ codes)."""

    @abstractmethod
    def decode(self, z: Latents) -> Tensor:
        """:class:`Latents` → frames ``(B, T, C, H, W)`` in [0, 1].

        A discrete backbone decodes ``z.codes`` when present; otherwise it snaps
        ``z.latents`` to the nearest codebook entries first.
        """

    def decode_latents(self, latents: Tensor) -> Tensor:
        """Differentiable decode: continuous latents ``(B, T, N, D)`` → frames ``(B, T, C, H, W)``.

        Not clamped (roughly [0, 1]); gradients reach ``latents`` (a head's decoded pixel loss,
        :mod:`futurelat.models.heads.pixel_loss`). A discrete backbone snaps to its codebook with
        the straight-through estimator.

        Raises:
            NotImplementedError: the backbone has no pixel decoder.
        """
        raise NotImplementedError(f"{type(self).__name__} has no differentiable pixel decoder")

    @abstractmethod
    def forward(self, frames: Tensor) -> dict[str, Tensor]:
        """Stage-1 training losses for frames ``(B, T, C, H, W)``; key ``"loss"`` is optimized.

        A backbone that can be trained with ``backbone.gan`` takes a keyword
        ``return_reconstruction: bool = False``; when true, the dict also holds ``"reconstruction"``: the
        frames decoded in this same pass, ``(B, T, C, H, W)`` like ``frames`` (same frames, same order),
        roughly in [0, 1] and not clamped, with the graph to the decoder's parameters (the discriminator
        and the perceptual loss read it; their gradients flow back through it). ``"loss"`` stays the
        backbone's own objective (reconstruction, commitment, ...); the GAN step adds its terms to it.
        """

    def last_decoder_layer(self) -> Tensor:
        """The weight of the decoder's last layer (the one that outputs pixels): the adaptive GAN weight
        (``backbone.gan.adaptive_weight``) compares the gradient norms of the reconstruction and
        adversarial losses there (Esser et al. 2021).

        Raises:
            NotImplementedError: the backbone does not say (then only a fixed generator weight works).
        """
        raise NotImplementedError(f"{type(self).__name__} does not name its decoder's last layer "
                                  "(last_decoder_layer), which backbone.gan.adaptive_weight=true needs")

    def sample_training_frames(self, frames: Tensor, frames_per_clip: int) -> Tensor:
        """What stage 1 trains on: ``frames_per_clip`` random frames of each clip (per-frame tokenizers).

        ``(B, T, C, H, W)`` → ``(B, k, C, H, W)``, ``k = min(frames_per_clip, T)``, in random order. Uses
        the global torch RNG (checkpointed by the trainer, so a resumed run draws the same frames). A
        video tokenizer overrides it to return consecutive frames.
        """
        b, t = frames.shape[:2]
        k = min(int(frames_per_clip), t)
        index = torch.rand(b, t).argsort(dim=1)[:, :k].to(frames.device)
        return frames[torch.arange(b, device=frames.device)[:, None], index]

    def freeze(self) -> "Backbone":
        """Eval mode and ``requires_grad=False`` on every parameter; returns ``self``."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self


class Head(nn.Module, ABC):
    """Predicts future latents from context latents. Subclasses are listed by name in
    :data:`futurelat.registry.HEADS`, or named in a config by their ``"module:attr"`` path
    (``head.name: my_package.heads:MyHead``).

    Constructed as ``Head(spec: LatentSpec, num_frames: int, **config)`` where
    ``num_frames`` is the number of latent frames in a training clip (context + future).
    ``forward`` is the stage-2 training step on a whole clip; ``rollout`` predicts.
    """

    #: Whether the head needs ``Latents.codes`` (token priors) or works on latents. Heads whose
    #: objective is configurable set it per instance and override :meth:`config_needs_codes`.
    needs_codes: bool = False

    @classmethod
    def config_needs_codes(cls, params: dict) -> bool:
        """Whether a head built with config ``params`` (``head.params``) predicts codes.

        Lets the builder reject a code head on a continuous backbone before building anything.
        """
        return cls.needs_codes

    @abstractmethod
    def forward(self, z: Latents) -> dict[str, Tensor]:
        """Training losses for a clip ``z`` of ``num_frames`` latent frames; key ``"loss"``."""

    @abstractmethod
    @torch.no_grad()
    def rollout(self, context: Latents, num_future: int) -> Latents:
        """Predict ``num_future`` latent frames after ``context`` (``(B, Tc, N, D)``).

        Returns :class:`Latents` of shape ``(B, num_future, N, D)`` (with codes when the
        head predicts codes). Sampling options are set on the head (``head.sampling``).
        """


def check_frames(frames: Tensor, name: str = "frames") -> None:
    """Raise ``ValueError`` naming the shape unless ``frames`` is ``(B, T, C, H, W)`` float."""
    if frames.ndim != 5 or not frames.is_floating_point():
        raise ValueError(
            f"{name} must be a float tensor of shape (B, T, C, H, W) in [0, 1]; "
            f"got dtype={frames.dtype}, shape={tuple(frames.shape)}"
        )


def check_codes(codes: Tensor | None, where: str, tokens_per_frame: int, codebook_size: int,
                min_frames: int = 1) -> Tensor:
    """Return ``codes`` if they are int64 ``(B, T, N)`` with ``T >= min_frames`` and values in ``[0, K)``.

    Args:
        where: names the tensor in the message, e.g. ``"mamba head: context.codes"``.

    Raises:
        ValueError: ``codes`` is ``None`` (a continuous backbone), or has the wrong dtype, shape or range.
    """
    if codes is None:
        raise ValueError(f"{where} is None; this head predicts codes and needs a discrete backbone's codes")
    n, k = tokens_per_frame, codebook_size
    if codes.ndim != 3 or codes.shape[2] != n or codes.dtype != torch.int64 or codes.shape[1] < min_frames:
        raise ValueError(f"{where} must be int64 (B, T, N={n}) with T >= {min_frames}; "
                         f"got dtype={codes.dtype}, shape={tuple(codes.shape)}")
    if codes.numel() and (codes.min() < 0 or codes.max() >= k):
        raise ValueError(f"{where} must lie in [0, {k}); got [{int(codes.min())}, {int(codes.max())}]")
    return codes
