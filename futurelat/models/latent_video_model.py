"""``LatentVideoModel``: a backbone and a head, and the builder that checks they fit.

Shape notation: B batch, Tc context frames, Tf future frames, C×H×W pixels in [0, 1];
latents ``(B, T', N, D)``, codes ``(B, T', N)`` (see :mod:`futurelat.models.base`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from futurelat.models.base import Backbone, Head, Latents, LatentSpec, check_frames
from futurelat.registry import BACKBONES, HEADS
from futurelat.utils.modes import eval_mode


class LatentVideoModel(nn.Module):
    """Frames → latents (backbone) → future latents (head) → future frames (backbone decoder).

    Args:
        backbone: a :class:`Backbone`.
        head: a :class:`Head` built for ``spec``.
        spec: the backbone's :class:`LatentSpec` for the dataset's frame size.
    """

    def __init__(self, backbone: Backbone, head: Head, spec: LatentSpec):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.spec = spec

    @torch.no_grad()
    def encode(self, frames: Tensor) -> Latents:
        """Frozen encoding: frames ``(B, T, C, H, W)`` → :class:`Latents` ``(B, T', N, D)``.

        Runs the backbone in eval mode under ``no_grad`` (it must not learn in stage 2).
        """
        with eval_mode(self.backbone):
            return self.backbone.encode(frames)

    def head_inputs(self, batch: Mapping[str, Tensor]) -> dict[str, Any]:
        """Stage-2 ``prepare``: a batch ``{"frames": (B, T, C, H, W)}`` → ``{"z": Latents}``.

        A batch of a latent cache (:mod:`futurelat.datasets.latent_cache`), ``{"latents": (B, T', N, D)}``
        with ``"codes": (B, T', N)`` for a discrete backbone, is used as it is (no encoding).

        Raises:
            ValueError: cached latents/codes whose shape, dtype or presence does not fit ``self.spec``.
        """
        if "latents" not in batch:
            return {"z": self.encode(batch["frames"])}
        latents, codes = batch["latents"], batch.get("codes")
        n, d = self.spec.tokens_per_frame, self.spec.latent_dim
        if latents.ndim != 4 or tuple(latents.shape[2:]) != (n, d) or not latents.is_floating_point():
            raise ValueError(f"cached batch['latents'] must be float (B, T', N={n}, D={d}) for the backbone's spec; "
                             f"got {latents.dtype} {tuple(latents.shape)}: the cache was written by another backbone")
        if self.spec.discrete and (codes is None or codes.shape != latents.shape[:3] or codes.dtype != torch.int64):
            got = None if codes is None else f"{codes.dtype} {tuple(codes.shape)}"
            raise ValueError(f"cached batch['codes'] must be int64 {tuple(latents.shape[:3])} (B, T', N) for a "
                             f"discrete backbone (codebook_size={self.spec.codebook_size}); got {got}")
        return {"z": Latents(latents, codes if self.spec.discrete else None)}

    @property
    def deterministic(self) -> bool:
        """Whether :meth:`rollout` gives the same future on every call (the head's ``deterministic``, with
        its current sampling options; false for a head that does not say). The evaluator draws one
        future instead of ``eval.num_samples`` when it is."""
        return bool(getattr(self.head, "deterministic", False))

    @torch.no_grad()
    def rollout(self, context: Tensor, num_future: int) -> Tensor:
        """Predict frames: context ``(B, Tc, C, H, W)`` → future ``(B, num_future, C, H, W)`` in [0, 1].

        Raises:
            ValueError: if the backbone has no pixel decoder, or frames are mis-shaped.
        """
        check_frames(context, "context")
        if not self.backbone.has_decoder:
            raise ValueError(f"{type(self.backbone).__name__} has no pixel decoder; evaluate in latent space")
        step = self.spec.temporal_downsample
        if num_future % step:
            raise ValueError(f"num_future={num_future} must be a multiple of the backbone's temporal "
                             f"downsampling ({step})")
        self.eval()
        z_context = self.encode(context)
        return self.decode_future(z_context, self.head.rollout(z_context, num_future // step))

    @torch.no_grad()
    def decode_future(self, z_context: Latents, z_future: Latents) -> Tensor:
        """Frames ``(B, Tf, C, H, W)`` in [0, 1] of predicted latents ``z_future`` ``(B, Tf', ...)`` that
        follow ``z_context`` (``Tf = Tf' * temporal_downsample``).

        A causal video decoder (:attr:`LatentSpec.first_frame_alone`) decodes the future after its
        context (alone, the first future latent frame would decode as an image): context + future are
        decoded and the future's frames kept.
        """
        if not self.spec.first_frame_alone:
            return self.backbone.decode(z_future).clamp(0, 1)
        num_future = z_future.num_frames * self.spec.temporal_downsample
        return self.backbone.decode(_concat_time(z_context, z_future))[:, -num_future:].clamp(0, 1)

    @torch.no_grad()
    def reconstruct(self, frames: Tensor, return_codes: bool = False
                    ) -> Tensor | None | tuple[Tensor | None, Tensor | None]:
        """Tokenizer round trip ``(B, T, C, H, W)`` → ``(B, T, C, H, W)`` in [0, 1]; ``None`` without a decoder.

        With ``return_codes``: ``(frames, codes)``, the codes ``(B, T', N)`` int64 of the same encoding
        (``None`` for a continuous backbone), so a caller that counts codes does not encode twice.
        """
        if not self.backbone.has_decoder:
            return (None, None) if return_codes else None
        self.eval()
        z = self.encode(frames)
        recon = self.backbone.decode(z).clamp(0, 1)
        return (recon, z.codes) if return_codes else recon


def _concat_time(a: Latents, b: Latents) -> Latents:
    """``a`` then ``b`` along time; codes kept when both have them (a code head's latents may be empty)."""
    codes = None if a.codes is None or b.codes is None else torch.cat([a.codes, b.codes], dim=1)
    if a.latents.shape[-1] == b.latents.shape[-1]:
        latents = torch.cat([a.latents, b.latents.to(a.latents.dtype)], dim=1)
    elif codes is not None:  # only the codes are decoded
        latents = a.latents.new_zeros(*codes.shape, a.latents.shape[-1])
    else:
        raise ValueError(f"cannot join latents {tuple(a.latents.shape)} and {tuple(b.latents.shape)} without codes")
    return Latents(latents, codes)


# --------------------------------------------------------------------------------------
# Builder
# --------------------------------------------------------------------------------------


def _params(group: str, cfg: DictConfig, cls: type) -> dict[str, Any]:
    """``cfg.params`` as kwargs of ``cls``; unknown keys raise ``ValueError`` listing the valid ones."""
    params = OmegaConf.to_container(cfg.get("params") or {}, resolve=True)
    signature = inspect.signature(cls.__init__)
    valid = [name for name, p in signature.parameters.items()
             if name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(f'{group}.params.{k}' for k in unknown)} for "
                         f"{group} '{cfg.name}'; valid keys: {', '.join(valid)}")
    return params


def clip_latent_frames(spec: LatentSpec, context_frames: int, future_frames: int, name: str) -> tuple[int, int]:
    """``(Tc', Tc' + Tf')``: the latent frames of a clip's context and of the whole clip.

    Raises:
        ValueError: a count the backbone cannot encode: ``dataset.future_frames`` must be a multiple of the
            temporal downsampling ``s``, ``dataset.context_frames`` too, or ``1 + k * s`` when the backbone
            encodes the first frame alone (:attr:`LatentSpec.first_frame_alone`).
    """
    s = spec.temporal_downsample
    if future_frames % s:
        raise ValueError(f"dataset.future_frames={future_frames} is not a multiple of backbone '{name}' "
                         f"temporal downsampling ({s})")
    if not spec.first_frame_alone and context_frames % s:
        raise ValueError(f"dataset.context_frames={context_frames} is not a multiple of backbone '{name}' "
                         f"temporal downsampling ({s})")
    context = spec.latent_frames(context_frames, "dataset.context_frames", f"backbone '{name}'")
    return context, context + future_frames // s


def build_backbone(cfg: DictConfig) -> Backbone:
    """Build the backbone named ``cfg.backbone.name`` with ``cfg.backbone.params``.

    ``in_channels`` defaults to ``cfg.dataset.channels``.
    """
    cls = BACKBONES.get(cfg.backbone.name)
    params = _params("backbone", cfg.backbone, cls)
    if "in_channels" in inspect.signature(cls.__init__).parameters:
        params.setdefault("in_channels", int(cfg.dataset.channels))
    return cls(**params)


def build_model(cfg: DictConfig) -> LatentVideoModel:
    """Compose ``cfg.backbone`` and ``cfg.head`` into a :class:`LatentVideoModel`.

    A head's ``context_latents: null`` becomes the latent frames of ``dataset.context_frames`` (heads
    count latent frames; :func:`clip_latent_frames`). Checks, before any training, that the pair fits:
    the backbone accepts the dataset's frame size and frame counts (multiples of its temporal
    downsampling; ``1 + k * s`` context frames for a backbone that encodes the first frame alone), and
    a head that predicts codes gets a discrete backbone. A head with a decoded pixel loss
    (``head.params.pixel_loss_weight`` or ``pixel_ssim_weight > 0``) gets the backbone's
    ``decode_latents``; a code prior gets its ``embed_codes`` (:attr:`~futurelat.models.heads.objectives.code_prior.CodePrior.code_vectors`).

    Raises:
        KeyError: unknown backbone/head name (lists the valid ones).
        ValueError: unknown params keys, or a backbone/head pair that does not fit (says why).
    """
    backbone = build_backbone(cfg)
    size = int(cfg.dataset.image_size)
    spec = backbone.latent_spec((size, size))
    context_latents, num_latents = clip_latent_frames(spec, int(cfg.dataset.context_frames),
                                                      int(cfg.dataset.future_frames), str(cfg.backbone.name))
    head_cls = HEADS.get(cfg.head.name)
    head_params = _params("head", cfg.head, head_cls)
    if head_cls.config_needs_codes(head_params) and not spec.discrete:
        discrete = [n for n in BACKBONES.names() if BACKBONES.get(n).discrete]
        objective = f" (objective {head_params['objective']!r})" if "objective" in head_params else ""
        raise ValueError(f"head '{cfg.head.name}'{objective} predicts codes and needs a discrete backbone, but "
                         f"backbone '{cfg.backbone.name}' is continuous (codebook_size=None); "
                         f"discrete backbones: {', '.join(discrete)}; or choose a head objective that "
                         "predicts latents (e.g. head.params.objective=regression)")
    if "context_latents" in inspect.signature(head_cls.__init__).parameters and head_params.get("context_latents") is None:
        # null in the head's yaml: the dataset's context frames, counted in latent frames.
        head_params["context_latents"] = context_latents
    head = head_cls(spec, num_latents, **head_params)
    pixel_loss = getattr(head, "pixel_loss", None)
    if pixel_loss is not None and pixel_loss.active:
        if not backbone.has_decoder:
            raise ValueError(f"head.params.pixel_loss_weight={pixel_loss.weight} and pixel_ssim_weight="
                             f"{pixel_loss.ssim_weight} decode predictions to pixels, but backbone "
                             f"'{cfg.backbone.name}' has no pixel decoder; set both to 0")
        pixel_loss.decode = backbone.decode_latents
    objective = getattr(head, "objective", None)
    if spec.discrete and hasattr(objective, "code_vectors"):  # a code prior's mean-field rollout reads the codebook
        objective.code_vectors = backbone.embed_codes
    return LatentVideoModel(backbone, head, spec)
