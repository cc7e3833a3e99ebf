"""``latent_regression``: deterministic prediction of continuous latents, for any backbone.

Shape notation: ``B`` batch, ``T`` latent frames (``Tc`` context + ``Tf`` future), ``N = h * w``
tokens per frame, ``D`` latent channels, ``p`` patch side, ``M = N / p**2`` tokens per frame, ``d``
trunk width; latents ``(B, T, N, D)`` float.

Latents are standardized per channel (:class:`~futurelat.models.heads.standardize.LatentStandardizer`,
fitted on the first training batch, buffers ``standardizer.*``); the loss (``head.params.loss``:
:data:`LOSSES`) compares standardized predictions and targets. An optional decoded pixel loss
(:mod:`~futurelat.models.heads.pixel_loss`) adds the pixel MSE of decoded predictions. Each token
holds a ``p x p`` patch of latents (a linear map of its ``p*p*D`` values). On a discrete backbone
the predicted vectors are snapped to the codebook by the backbone's ``decode``. Two schemes:

- :class:`BlockRegression` (FutureLatents' PredictorTransformer): the ``Tc`` context frames become
  tokens and the ``Tf`` future frames are query tokens (one shared learned vector, told apart by
  their positions); one pass over the ``(Tc + Tf) * M`` tokens predicts all future frames, as the
  future latents (``target="absolute"``) or their change from the last context frame
  (``"residual"``). Rollouts beyond ``Tf`` go in blocks. Any trunk fits; a bidirectional one
  (``causal == "none"``) lets the context see the queries.
- :class:`NextFrameRegression` (the encoder-Mamba-decoder frame predictor): teacher-forced next-frame
  prediction on a frame-causal trunk (``causal == "frame"``); rollouts feed each prediction back as
  the next input, one trunk step per frame. ``input_noise`` adds Gaussian noise to the standardized
  inputs in training (robust rollouts).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from futurelat.models.base import Latents, LatentSpec
from futurelat.models.heads.composed import check_latents
from futurelat.models.heads.patches import patchify, unpatchify
from futurelat.models.heads.pixel_loss import DecodedPixelLoss
from futurelat.models.heads.standardize import LatentStandardizer

#: Regression losses in standardized latent space (``head.params.loss``).
LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss, "smooth_l1": F.smooth_l1_loss}


class _LatentRegression(nn.Module):
    """What both schemes share: patches, the standardizer, the loss, the pixel loss and input checks."""

    needs_codes = False

    def __init__(self, spec: LatentSpec, *, patch_size: int, loss: str, pixel_loss: DecodedPixelLoss, name: str):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"head.params.loss must be one of {tuple(LOSSES)}; got {loss!r}")
        self.spec, self.grid, self.patch_size, self.name = spec, tuple(spec.grid), patch_size, name
        self.frame_tokens = (spec.grid[0] // patch_size) * (spec.grid[1] // patch_size)  # M
        self.loss_name, self.pixel_loss = loss, pixel_loss

    def _check_latents(self, latents: Tensor, name: str, frames: int, exact: bool) -> Tensor:
        return check_latents(latents, f"{self.name} head: {name}.latents", self.spec.tokens_per_frame,
                             self.spec.latent_dim, frames, exact)

    def _to_latents(self, x: Tensor) -> Tensor:
        """Output tokens ``(B, T * M, p*p*D)`` → ``(B, T, N, D)``."""
        return unpatchify(x.view(x.shape[0], -1, self.frame_tokens, x.shape[-1]), self.grid, self.patch_size)


    def deterministic(self, sampling: Mapping[str, Any] | None) -> bool:
        """Always true: a regression's rollout is a function of its context."""
        return True


class BlockRegression(_LatentRegression):
    """All ``Tf`` future frames from ``Tc`` context frames in one pass; see the module docstring.

    Args (keyword-only; the head validates them, naming ``head.params.<key>``):
        spec: the backbone's :class:`LatentSpec`. num_frames: ``Tc + Tf`` per training clip.
        context_latents: ``Tc`` in ``[1, num_frames)``. patch_size: ``p``, divides the grid.
        width: ``d``, the trunk's width. loss: one of :data:`LOSSES`.
        target: ``"absolute"`` or ``"residual"``. pixel_loss: the decoded pixel loss (off at weight 0).
        name: the head's name, for messages.

    Layers keep PyTorch's initialization; the head initializes them (a zero output layer makes a
    fresh residual head the copy-last-frame baseline).
    """

    def __init__(self, spec: LatentSpec, num_frames: int, *, context_latents: int, patch_size: int, width: int,
                 loss: str, target: str, pixel_loss: DecodedPixelLoss, name: str):
        super().__init__(spec, patch_size=patch_size, loss=loss, pixel_loss=pixel_loss, name=name)
        self.num_frames, self.context_latents = num_frames, context_latents
        self.future_latents, self.target = num_frames - context_latents, target
        token_dim = patch_size * patch_size * spec.latent_dim
        self.to_tokens = nn.Linear(token_dim, width)
        self.future_query = nn.Parameter(torch.zeros(width))
        self.to_out = nn.Linear(width, token_dim)
        self.standardizer = LatentStandardizer(spec.latent_dim)

    def standardize(self, latents: Tensor) -> Tensor:
        """Latents ``(..., D)`` → standardized float32 ``(..., D)``."""
        return self.standardizer(latents.float())

    def unstandardize(self, x: Tensor) -> Tensor:
        """Inverse of :meth:`standardize`: ``(..., D)`` → latents float32 ``(..., D)``."""
        return self.standardizer.inverse(x.float())

    def predict(self, trunk: nn.Module, context: Tensor) -> Tensor:
        """Standardized context ``(B, Tc', N, D)`` → standardized ``(B, Tf, N, D)``, the next ``Tf`` frames.

        One pass over ``Tc' * M`` context tokens then ``Tf * M`` query tokens at frames
        ``Tc' .. Tc' + Tf - 1``; ``Tc'`` may differ from ``context_latents``. With
        ``target="residual"`` the outputs are added to the last context frame.
        """
        bsz, frames = context.shape[:2]
        m, p = self.frame_tokens, self.patch_size
        tokens = self.to_tokens(patchify(context, self.grid, p))  # (B, Tc', M, d)
        queries = self.future_query.expand(bsz, self.future_latents, m, -1)  # (B, Tf, M, d)
        x = trunk(torch.cat([tokens, queries], dim=1).flatten(1, 2))  # (B, (Tc' + Tf) * M, d)
        out = unpatchify(self.to_out(x[:, frames * m:]).view(bsz, self.future_latents, m, -1), self.grid, p)
        return out + context[:, -1:] if self.target == "residual" else out  # (B, Tf, N, D)

    def loss(self, trunk: nn.Module, z: Latents) -> dict[str, Tensor]:
        """Losses on a clip ``z.latents`` ``(B, num_frames, N, D)``: frames ``Tc ..`` from the first ``Tc``.

        Returns ``loss`` (the configured loss on standardized latents, plus the weighted pixel loss
        when on), ``l1`` and ``mse`` (standardized units, >= 0), ``cosine`` (mean cosine similarity in
        [-1, 1] of predicted and true latent vectors, un-standardized) and, with the pixel loss,
        ``pixel_mse`` (per pixel, frames in [0, 1]). The first training batch fits the standardizer.

        Raises:
            ValueError: ``z.latents`` not float ``(B, num_frames, N, D)``.
        """
        latents = self._check_latents(z.latents, "z", self.num_frames, exact=True)
        self.standardizer.fit_once(latents)
        x = self.standardize(latents)
        pred = self.predict(trunk, x[:, :self.context_latents]).float()
        target = x[:, self.context_latents:]
        loss = LOSSES[self.loss_name](pred, target)
        extra: dict[str, Tensor] = {}
        loss = self.pixel_loss.add_to(loss, extra, pred, latents[:, self.context_latents:], self.unstandardize)
        with torch.no_grad():
            cosine = F.cosine_similarity(self.unstandardize(pred), latents[:, self.context_latents:].float(), dim=-1)
            return {"loss": loss, "l1": F.l1_loss(pred, target), "mse": F.mse_loss(pred, target),
                    "cosine": cosine.mean(), **extra}

    def rollout(self, trunk: nn.Module, context: Latents, num_future: int, *, sampling: Mapping[str, Any] | None,
                generator: torch.Generator | None) -> Latents:
        """Predict ``num_future`` frames from ``context.latents`` ``(B, Tc', N, D)`` (its last ``Tc`` are used).

        Deterministic (``sampling`` and ``generator`` are unused). Beyond ``Tf`` frames it goes in
        blocks of ``Tf``: predictions are appended to the context and the last ``Tc`` frames predict
        the next block. Returns :class:`Latents` ``(B, num_future, N, D)`` in the backbone's scale,
        ``codes=None``.

        Raises:
            ValueError: ``context.latents`` not float ``(B, T >= 1, N, D)``.
        """
        latents = self._check_latents(context.latents, "context", 1, exact=False)
        x = self.standardize(latents)[:, -self.context_latents:]
        future = []
        for _ in range(math.ceil(num_future / self.future_latents)):
            pred = self.predict(trunk, x).float()  # (B, Tf, N, D)
            future.append(pred)
            x = torch.cat([x, pred], dim=1)[:, -self.context_latents:]
        out = self.unstandardize(torch.cat(future, dim=1)[:, :num_future])
        return Latents(latents=out.to(latents.dtype), codes=None)


class NextFrameRegression(_LatentRegression):
    """Teacher-forced next-frame prediction on a frame-causal trunk; see the module docstring.

    Args (keyword-only; the head validates them, naming ``head.params.<key>``):
        spec: the backbone's :class:`LatentSpec`. patch_size: ``p``, divides the grid.
        width: ``d``, the trunk's width. loss: one of :data:`LOSSES`.
        input_noise: standard deviation (>= 0) of Gaussian noise on the standardized inputs in training.
        pixel_loss: the decoded pixel loss (off at weight 0). name: the head's name, for messages.

    Layers keep PyTorch's initialization; the head initializes them.
    """

    def __init__(self, spec: LatentSpec, *, patch_size: int, width: int, loss: str, input_noise: float,
                 pixel_loss: DecodedPixelLoss, name: str):
        super().__init__(spec, patch_size=patch_size, loss=loss, pixel_loss=pixel_loss, name=name)
        self.input_noise = input_noise
        self.standardizer = LatentStandardizer(spec.latent_dim)
        self.latent_in = nn.Linear(patch_size * patch_size * spec.latent_dim, width)
        self.latent_out = nn.Linear(width, patch_size * patch_size * spec.latent_dim)

    def check_trunk(self, trunk: nn.Module) -> None:
        """Raise ``ValueError`` unless ``trunk.causal == "frame"``."""
        if getattr(trunk, "causal", None) != "frame":
            raise ValueError(f"next-frame latent regression needs a trunk with causal='frame'; "
                             f"{type(trunk).__name__} has causal={getattr(trunk, 'causal', None)!r}")

    def embed(self, x: Tensor) -> Tensor:
        """Standardized latents ``(B, T, N, D)`` → tokens ``(B, T * M, d)``."""
        return self.latent_in(patchify(x, self.grid, self.patch_size)).flatten(1, 2)

    def readout(self, h: Tensor) -> Tensor:
        """Features ``(B, T * M, d)`` → standardized latents ``(B, T, N, D)``."""
        return self._to_latents(self.latent_out(h))

    def predict(self, trunk: nn.Module, x: Tensor) -> Tensor:
        """Teacher forcing: standardized frames ``(B, T, N, D)`` → each one's next frame ``(B, T, N, D)``."""
        return self.readout(trunk(self.embed(x)))

    def loss(self, trunk: nn.Module, z: Latents) -> dict[str, Tensor]:
        """Next-frame loss on ``z.latents`` ``(B, T >= 2, N, D)``: frames ``1 .. T - 1`` from the ones before.

        Returns ``loss`` (the configured loss on standardized latents, plus the weighted pixel loss
        when on), ``l1``, ``mse`` (standardized units), ``cosine`` (mean cosine similarity of
        predicted and true standardized vectors, in [-1, 1]) and, with the pixel loss, ``pixel_mse``.

        Raises:
            ValueError: ``z.latents`` not float ``(B, T >= 2, N, D)``.
        """
        latents = self._check_latents(z.latents, "z", 2, exact=False)
        self.standardizer.fit_once(latents)
        x = self.standardizer(latents)
        inputs = x[:, :-1]
        if self.training and self.input_noise > 0:
            inputs = inputs + self.input_noise * torch.randn_like(inputs)
        pred, target = self.predict(trunk, inputs).float(), x[:, 1:].float()
        with torch.no_grad():
            stats = {"l1": F.l1_loss(pred, target), "mse": F.mse_loss(pred, target),
                     "cosine": F.cosine_similarity(pred, target, dim=-1).mean()}
        loss = self.pixel_loss.add_to(LOSSES[self.loss_name](pred, target), stats, pred, latents[:, 1:],
                                      self.standardizer.inverse)
        return {"loss": loss, **stats}

    def prefill(self, trunk: nn.Module, context: Tensor) -> tuple[Tensor, Any]:
        """Standardized context ``(B, Tc, N, D)`` → (standardized prediction ``(B, N, D)`` of frame ``Tc``, state)."""
        h, state = trunk.prefill(self.embed(context))
        return self.readout(h[:, -self.frame_tokens:])[:, 0], state

    def step(self, trunk: nn.Module, frame: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Standardized frame ``(B, N, D)`` → (the next frame's prediction ``(B, N, D)``, new state)."""
        h, state = trunk.step(self.embed(frame[:, None]), state)
        return self.readout(h)[:, 0], state

    def rollout(self, trunk: nn.Module, context: Latents, num_future: int, *, sampling: Mapping[str, Any] | None,
                generator: torch.Generator | None) -> Latents:
        """Read ``context.latents`` ``(B, Tc, N, D)`` once, then feed each predicted frame back.

        Deterministic (``sampling`` and ``generator`` are unused). Returns :class:`Latents` with
        ``latents`` ``(B, num_future, N, D)`` in the backbone's scale and ``codes=None``.

        Raises:
            ValueError: ``context.latents`` not float ``(B, T >= 1, N, D)``.
        """
        latents = self._check_latents(context.latents, "context", 1, exact=False)
        pred, state = self.prefill(trunk, self.standardizer(latents))
        predicted = [pred]
        for _ in range(num_future - 1):
            pred, state = self.step(trunk, pred, state)
            predicted.append(pred)
        return Latents(latents=self.standardizer.inverse(torch.stack(predicted, dim=1)), codes=None)
