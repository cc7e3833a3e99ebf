"""``flow_matching``: rectified-flow training and ODE sampling of future latents, given a context.

Shape notation: ``B`` batch, ``Tc`` context latent frames (``context_latents``), ``Tf`` future latent frames of a
training clip (``num_frames - context_latents``), ``N`` tokens per latent frame, ``D`` latent
channels. Latents are ``(B, T, N, D)`` float.

Training (:meth:`FlowMatching.loss`): the clip's last ``Tf`` frames are the data ``x_1``; with noise
``x_0 ~ N(0, I)`` and a time ``t`` (``time_sampling``: uniform or logit-normal), the network
regresses the velocity ``x_1 - x_0`` at ``x_t = (1 - t) x_0 + t x_1`` given ``t`` and the first
``Tc`` frames (rectified flow, :mod:`futurelat.models.heads.flow`). Prediction
(:meth:`FlowMatching.rollout`) integrates that ODE from fresh noise to ``t = 1`` (Euler or Heun):
the returned latents are the integrated *samples*, never velocities.

The network's output is the velocity (``prediction="velocity"``) or, with ``prediction="data"``,
the data estimate ``x̂_1`` from which the velocity of the straight path through ``x_t`` follows
(x-prediction, Li & He 2025, "Back to Basics: Let Denoising Generative Models Denoise",
arXiv:2511.13720), trained with the x-loss ``|x̂_1 - x_1|^2`` (the velocity MSE weighted by
``max(1 - t, 0.05)^2``); Heun sampling then ends with an Euler step (the velocity is undefined at
``t = 1``).

Classifier-free guidance (Ho & Salimans 2022): in training each sample's context is dropped with
probability ``context_dropout`` (the network sees its null condition), which teaches the
unconditional velocity used by a guidance scale ``!= 1``.

Latent standardization: a VQ backbone's latents have an arbitrary scale, while the noise is
``N(0, I)``. The first training batch sets a per-channel mean and std
(:class:`~futurelat.models.heads.standardize.LatentStandardizer`, buffers ``standardizer.*``);
context and targets are standardized, samples un-standardized. With ``target="residual"`` the flow
generates the change of each future frame from the last context frame instead (standardized with
its own statistics, ``residual_standardizer.*``), added back to that frame.

Fits a conditional network ``net(x_t, t, context, uncond) -> (B, Tf, N, D)``, e.g.
:class:`~futurelat.models.heads.trunks.dit.DiTTrunk`.
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
from futurelat.models.heads.flow import (SamplingOptions, guided_velocity, integrate, linear_path, sample_times,
                                         sampling_options)
from futurelat.models.heads.standardize import LatentStandardizer

#: What the network outputs: the velocity itself, or the data ``x_1`` (x-prediction, turned into a velocity).
PREDICTIONS = ("velocity", "data")
#: x-prediction divides by ``1 - t``; clamped below at this gap (Li & He 2025 clip the same way).
DATA_PREDICTION_MIN_GAP = 0.05


class FlowMatching(nn.Module):
    """Rectified flow over continuous latents ``(B, T, N, D)`` with a conditional network; see the module docstring.

    Args (keyword-only; the head validates them, naming ``head.params.<key>``):
        spec: the backbone's :class:`LatentSpec`. num_frames: ``Tc + Tf`` per training clip.
        context_latents: ``Tc`` in ``[1, num_frames)``.
        context_dropout: training probability in [0, 1) of dropping a sample's context.
        time_sampling: ``"uniform"`` or ``"logit_normal"``.
        prediction: ``"velocity"`` or ``"data"``.
        target: ``"absolute"`` or ``"residual"``.
        name: the head's name, for messages.
    """

    needs_codes = False

    def __init__(self, spec: LatentSpec, num_frames: int, *, context_latents: int, context_dropout: float,
                 time_sampling: str, prediction: str, target: str, name: str):
        super().__init__()
        self.spec, self.num_frames, self.context_latents, self.name = spec, num_frames, context_latents, name
        self.future_latents = num_frames - context_latents
        self.context_dropout, self.time_sampling = context_dropout, time_sampling
        self.prediction, self.target = prediction, target
        self.standardizer = LatentStandardizer(spec.latent_dim)
        if target == "residual":
            self.residual_standardizer = LatentStandardizer(spec.latent_dim)

    def _check_latents(self, latents: Tensor, name: str, frames: int, exact: bool) -> Tensor:
        """``latents`` as the buffers' dtype if float ``(B, T, N, D)`` with ``T == frames`` (``exact``)
        or ``T >= frames``; else ``ValueError`` naming the expected and the actual shape."""
        check_latents(latents, f"{self.name} head: {name}", self.spec.tokens_per_frame, self.spec.latent_dim,
                      frames, exact)
        return latents.to(self.standardizer.mean.dtype)

    def velocity(self, net: nn.Module, x_t: Tensor, t: Tensor, context: Tensor, uncond: Tensor) -> Tensor:
        """The predicted velocity ``dx_t/dt`` ``(B, Tf', N, D)`` (standardized units) of ``net``'s output.

        Args: as ``net``: ``x_t`` ``(B, Tf', N, D)`` standardized noisy future latents, ``t`` ``(B,)``
        in [0, 1], ``context`` ``(B, Tc', N, D)`` standardized, ``uncond`` ``(B,)`` bool.
        """
        out = net(x_t, t, context, uncond)
        if self.prediction == "velocity":
            return out
        # x-prediction: the network outputs the data estimate; velocity of the linear path through it.
        return (out - x_t) / (1 - t).clamp_min(DATA_PREDICTION_MIN_GAP).view(-1, 1, 1, 1)

    def loss(self, net: nn.Module, z: Latents) -> dict[str, Tensor]:
        """Flow-matching loss of ``net`` on a clip ``z.latents`` ``(B, num_frames, N, D)``.

        The first call in training mode sets the standardization statistics from this batch.
        Context dropout applies in training mode only.

        Returns:
            ``loss``: MSE between predicted and target velocity ``x_1 - x_0`` (standardized units,
            mean over all elements; ~2 for a zero prediction); with ``prediction="data"`` the x-loss,
            MSE between ``x̂_1`` and ``x_1`` (~1 for a zero prediction). ``x1_mse``: MSE of the one-step data
            estimate ``x_t + (1 - t) v`` against ``x_1`` (a diagnostic in [0, inf), not optimized).

        Raises:
            ValueError: ``z.latents`` is not float ``(B, num_frames, N, D)``.
        """
        latents = self._check_latents(z.latents, "z.latents", self.num_frames, exact=True)
        self.standardizer.fit_once(latents)
        x = self.standardizer(latents)
        context = x[:, :self.context_latents]
        x1 = self._to_target(context, x[:, self.context_latents:])
        bsz = x.shape[0]
        path = linear_path(torch.randn_like(x1), x1, sample_times(bsz, self.time_sampling, device=x.device))
        uncond = torch.rand(bsz, device=x.device) < (self.context_dropout if self.training else 0.0)
        v = self.velocity(net, path.x_t, path.t, context, uncond)
        if self.prediction == "data":  # x-loss: the data estimate against x_1
            gap = (1 - path.t).clamp_min(DATA_PREDICTION_MIN_GAP).view(-1, 1, 1, 1)
            loss = F.mse_loss((gap * v).float(), (gap * path.velocity).float())
        else:
            loss = F.mse_loss(v.float(), path.velocity.float())
        with torch.no_grad():
            remaining = (1 - path.t).view(-1, 1, 1, 1)
            x1_mse = (remaining * (v.float() - path.velocity.float())).square().mean()
        return {"loss": loss, "x1_mse": x1_mse}

    def _to_target(self, context: Tensor, future: Tensor) -> Tensor:
        """Standardized future ``(B, Tf, N, D)`` → what the flow generates (see ``target``)."""
        if self.target == "absolute":
            return future
        delta = future - context[:, -1:]
        self.residual_standardizer.fit_once(delta)
        return self.residual_standardizer(delta)

    def _from_target(self, context: Tensor, x1: Tensor) -> Tensor:
        """Inverse of :meth:`_to_target`: generated ``(B, Tf, N, D)`` → standardized future latents."""
        if self.target == "absolute":
            return x1
        return context[:, -1:] + self.residual_standardizer.inverse(x1)

    def _sample_block(self, net: nn.Module, context: Tensor, options: SamplingOptions,
                      generator: torch.Generator | None) -> Tensor:
        """Standardized context ``(B, Tc, N, D)`` → ``Tf`` integrated, standardized frames ``(B, Tf, N, D)``."""
        bsz = context.shape[0]
        noise = options.noise_scale * torch.randn((bsz, self.future_latents, *context.shape[2:]), generator=generator,
                                                  device=context.device, dtype=context.dtype)

        def velocity(x: Tensor, t: Tensor, uncond: Tensor) -> Tensor:  # x may be the doubled CFG batch
            return self.velocity(net, x, t, context.repeat(x.shape[0] // bsz, 1, 1, 1), uncond)

        x1 = integrate(guided_velocity(velocity, options.guidance_scale), noise, solver=options.solver,
                       steps=options.steps, euler_last=self.prediction == "data")
        return self._from_target(context, x1)

    def deterministic(self, sampling: Mapping[str, Any] | None) -> bool:
        """Whether :meth:`rollout` gives the same future every call: only at ``noise_scale`` 0."""
        return sampling_options(sampling).noise_scale == 0

    def rollout(self, net: nn.Module, context: Latents, num_future: int, *, sampling: Mapping[str, Any] | None,
                generator: torch.Generator | None) -> Latents:
        """Sample ``num_future`` latent frames after ``context.latents`` ``(B, Tc', N, D)``, ``Tc' >= Tc``.

        The last ``Tc`` context frames condition an ODE integration from noise (drawn with
        ``generator``, or torch's global RNG) with ``sampling``'s solver, steps, guidance and noise
        scale (:func:`~futurelat.models.heads.flow.sampling_options`). Beyond the trained horizon
        ``Tf`` it rolls out in blocks of ``Tf`` frames, each conditioned on the last ``Tc`` frames so
        far (context and samples); the last block is sampled whole and cut, so every block matches
        the training layout. Call in eval mode, under ``no_grad``.

        Returns:
            :class:`Latents` with ``latents`` ``(B, num_future, N, D)`` float (un-standardized
            integrated samples) and ``codes=None``.

        Raises:
            ValueError: a bad context shape, or bad ``sampling``.
        """
        options = sampling_options(sampling)
        latents = self._check_latents(context.latents, "context.latents", self.context_latents, exact=False)
        window, blocks = self.standardizer(latents[:, -self.context_latents:]), []
        for _ in range(math.ceil(num_future / self.future_latents)):
            blocks.append(self._sample_block(net, window, options, generator))
            window = torch.cat([window, blocks[-1]], dim=1)[:, -self.context_latents:]
        future = torch.cat(blocks, dim=1)[:, :num_future]
        return Latents(latents=self.standardizer.inverse(future), codes=None)
