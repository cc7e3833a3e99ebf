"""Rectified flow (flow matching with the linear path): the path, the training target, ODE samplers.

Shape notation: ``B`` batch, ``...`` any trailing axes of a sample (e.g. ``(T, N, D)`` latents).
Time runs from ``t = 0`` (noise ``x_0 ~ N(0, I)``) to ``t = 1`` (data ``x_1``).

The path (Lipman et al. 2023, "Flow Matching for Generative Modeling", arXiv:2210.02747, its
CondOT path with ``sigma_min = 0``; Liu et al. 2023, "Flow Straight and Fast", arXiv:2209.03003)::

    x_t = (1 - t) * x_0 + t * x_1        target velocity  u = dx_t/dt = x_1 - x_0

A network ``v(x_t, t)`` regressed onto ``u`` with the MSE learns the marginal velocity field whose
ODE ``dx/dt = v(x, t)`` carries ``N(0, I)`` at ``t = 0`` to the data distribution at ``t = 1``.
Training times are drawn uniformly or logit-normally (Esser et al. 2024, "Scaling Rectified Flow
Transformers", arXiv:2403.03206: ``t = sigmoid(n)``, ``n ~ N(0, 1)``, which favours mid-path
times where the target is hardest to predict).

Sampling integrates the ODE on the uniform grid ``t_i = i / steps`` with :func:`integrate`:

- ``euler``: ``x += h v(x, t_i)``, ``steps`` velocity evaluations (NFE).
- ``heun``: Euler predictor then trapezoid corrector ``x += h/2 (v(x, t_i) + v(x_pred, t_{i+1}))``
  on *every* step, the last one included (``2 * steps`` NFE). EDM (Karras et al. 2022) ends with
  an Euler step because its velocity is singular at noise level 0; the rectified-flow velocity at
  ``t = 1`` is finite, so the full second-order step is kept and a velocity affine in ``t`` is
  integrated exactly.

Classifier-free guidance (Ho & Salimans 2022, arXiv:2207.12598), :func:`guided_velocity`:
``v = v_uncond + w (v_cond - v_uncond)``; ``w = 1`` is plain conditional sampling (one pass),
any other ``w`` evaluates both in one pass over a doubled batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from futurelat.config.head import FlowSampling

#: ``velocity(x, t)``: ``x`` ``(B, ...)``, ``t`` ``(B,)`` in [0, 1] → ``dx/dt`` ``(B, ...)``.
VelocityFn = Callable[[Tensor, Tensor], Tensor]
#: ``velocity(x, t, uncond)``: as :data:`VelocityFn` plus ``uncond`` ``(B,)`` bool, True where the
#: sample's conditioning is replaced by the null condition.
ConditionalVelocityFn = Callable[[Tensor, Tensor, Tensor], Tensor]

SOLVERS = ("euler", "heun")
TIME_SAMPLINGS = ("uniform", "logit_normal")
#: Keys of a flow head's ``sampling`` dict (``head.params.sampling``) and their defaults
#: (:class:`futurelat.config.head.FlowSampling`).
SAMPLING_DEFAULTS: dict[str, Any] = asdict(FlowSampling())


# ---------------------------------------------------------------------------------------------
# The path and the training target
# ---------------------------------------------------------------------------------------------


@dataclass
class PathSample:
    """A point on the linear path and its regression target.

    Attributes:
        t: ``(B,)`` times in [0, 1].
        x_t: ``(B, ...)`` ``(1 - t) x_0 + t x_1``.
        velocity: ``(B, ...)`` the target ``x_1 - x_0``.
    """

    t: Tensor
    x_t: Tensor
    velocity: Tensor


def sample_times(batch: int, method: str = "uniform", *, device: torch.device | str | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
    """Training times ``(batch,)`` float in [0, 1] (logit-normal: in (0, 1)).

    Args:
        method: ``"uniform"`` (``U(0, 1)``) or ``"logit_normal"`` (``sigmoid(N(0, 1))``, SD3).

    Raises:
        ValueError: unknown ``method``.
    """
    if method == "uniform":
        return torch.rand(batch, device=device, generator=generator)
    if method == "logit_normal":
        return torch.sigmoid(torch.randn(batch, device=device, generator=generator))
    raise ValueError(f"head.params.time_sampling must be one of {TIME_SAMPLINGS}; got {method!r}")


def linear_path(x0: Tensor, x1: Tensor, t: Tensor) -> PathSample:
    """The rectified-flow interpolant between noise ``x0`` and data ``x1`` (both ``(B, ...)``) at
    times ``t`` ``(B,)`` → :class:`PathSample`."""
    tb = t.view(-1, *([1] * (x1.ndim - 1))).to(x1.dtype)
    return PathSample(t=t, x_t=(1 - tb) * x0 + tb * x1, velocity=x1 - x0)


# ---------------------------------------------------------------------------------------------
# Sampling options, guidance and the ODE solvers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplingOptions:
    """Validated ``sampling`` settings.

    Attributes:
        solver: ``"euler"`` or ``"heun"``.
        steps: ODE steps >= 1 (velocity evaluations: ``steps`` for euler, ``2 * steps`` for heun).
        guidance_scale: classifier-free guidance weight ``w >= 0``; 1 = no guidance.
        noise_scale: ``tau >= 0``, the starting noise is ``x_0 ~ N(0, tau^2 I)``. 1 samples the
            learned distribution; ``tau < 1`` trades diversity for accuracy (the temperature of
            Glow, Kingma & Dhariwal 2018); 0 integrates from the noise mean, a deterministic
            prediction.
    """

    solver: str
    steps: int
    guidance_scale: float
    noise_scale: float = 1.0


def sampling_options(sampling: Mapping[str, Any] | None) -> SamplingOptions:
    """Validate a ``sampling`` mapping (keys of :data:`SAMPLING_DEFAULTS`; missing ones take the
    defaults) → :class:`SamplingOptions`.

    Raises:
        ValueError: an unknown key, an unknown solver, ``steps`` not an integer >= 1, or a
            negative / non-finite ``guidance_scale``; the message names ``head.sampling.<key>``.
    """
    options = dict(SAMPLING_DEFAULTS)
    if sampling is not None:
        unknown = sorted(set(sampling) - set(SAMPLING_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown sampling key(s) {unknown} (head.sampling); valid: {sorted(SAMPLING_DEFAULTS)}")
        options.update(sampling)
    solver, steps, scale = options["solver"], options["steps"], options["guidance_scale"]
    noise_scale = float(options["noise_scale"])
    if not math.isfinite(noise_scale) or noise_scale < 0:
        raise ValueError(f"head.sampling.noise_scale must be a finite number >= 0; got {noise_scale}")
    if solver not in SOLVERS:
        raise ValueError(f"head.sampling.solver must be one of {SOLVERS}; got {solver!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"head.sampling.steps must be an integer >= 1; got {steps!r}")
    scale = float(scale)
    if not math.isfinite(scale) or scale < 0:
        raise ValueError(f"head.sampling.guidance_scale must be a finite number >= 0; got {scale}")
    return SamplingOptions(solver=solver, steps=steps, guidance_scale=scale, noise_scale=noise_scale)


def guided_velocity(velocity: ConditionalVelocityFn, guidance_scale: float) -> VelocityFn:
    """Classifier-free guidance: ``v = v_uncond + w (v_cond - v_uncond)`` as a :data:`VelocityFn`.

    ``w = 1``: one call ``velocity(x, t, uncond=all False)``. Otherwise one call on the doubled
    batch ``(2B, ...)``: rows ``i`` and ``B + i`` are the same sample, conditional then
    unconditional (``uncond = [False] * B + [True] * B``); ``velocity`` must repeat its own
    conditioning to match (e.g. ``cond.repeat(2, ...)``).
    """
    if guidance_scale == 1.0:
        return lambda x, t: velocity(x, t, torch.zeros(x.shape[0], dtype=torch.bool, device=x.device))

    def guided(x: Tensor, t: Tensor) -> Tensor:
        batch = x.shape[0]
        uncond = torch.arange(2 * batch, device=x.device) >= batch
        v_cond, v_uncond = velocity(torch.cat([x, x]), torch.cat([t, t]), uncond).split(batch)
        return v_uncond + guidance_scale * (v_cond - v_uncond)

    return guided


def integrate(velocity: VelocityFn, x0: Tensor, *, solver: str = "heun", steps: int = 10,
              euler_last: bool = False) -> Tensor:
    """Integrate ``dx/dt = velocity(x, t)`` from ``t = 0`` to ``t = 1`` on a uniform grid.

    Args:
        velocity: ``(x (B, ...), t (B,)) → (B, ...)``; ``t`` is filled with the current time.
        x0: ``(B, ...)`` the state at ``t = 0`` (noise, for sampling).
        solver: ``"euler"`` (first order, ``steps`` calls) or ``"heun"`` (second order, ``2 * steps``
            calls; the trapezoid corrector on every step, the last one included unless ``euler_last``).
        steps: number of steps ``>= 1``.
        euler_last: with ``"heun"``, end with a plain Euler step, never calling ``velocity`` at
            ``t = 1`` (as EDM's sampler skips the correction at sigma = 0, Karras et al. 2022, Alg. 1);
            for a velocity derived from a data prediction, ``(x̂ - x) / (1 - t)``, which is undefined there.

    Returns:
        ``(B, ...)`` the state at ``t = 1``, same dtype as ``x0``.

    Raises:
        ValueError: unknown ``solver`` or ``steps < 1``.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}; got {solver!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    x, h = x0, 1.0 / steps
    for i in range(steps):
        t0, t1 = i / steps, (i + 1) / steps
        v0 = velocity(x, x.new_full((x.shape[0],), t0))
        if solver == "euler" or (euler_last and i == steps - 1):
            x = x + h * v0
        else:
            v1 = velocity(x + h * v0, x.new_full((x.shape[0],), t1))
            x = x + (0.5 * h) * (v0 + v1)
    return x
