"""``flow_dit`` head: a diffusion transformer that samples future latents by rectified flow.

Shape notation: ``B`` batch, ``Tc`` context latent frames (``context_latents``), ``Tf`` future latent frames of a
training clip (``num_frames - context_latents``), ``N = h * w`` tokens per latent frame on the
``(h, w)`` grid, ``D`` latent channels, ``p`` patch size, ``d`` model width. Latents are
``(B, T, N, D)`` float.

The head is a DiT (Peebles & Xie 2023, arXiv:2212.09748; adaLN-Zero blocks over space-time
patches, the flow time and the context as conditions: :mod:`futurelat.models.heads.trunks.dit`)
trained and sampled by rectified flow (:mod:`futurelat.models.heads.objectives.flow_matching`):
the network regresses the velocity from noise to the future latents given the context; a rollout
integrates that ODE from fresh noise, so it returns samples, never velocities.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from futurelat.config.head import FlowDiTParams
from futurelat.models.base import LatentSpec
from futurelat.models.heads.composed import ComposedHead
from futurelat.models.heads.flow import TIME_SAMPLINGS, SamplingOptions, sampling_options
from futurelat.models.heads.objectives.flow_matching import PREDICTIONS, FlowMatching
from futurelat.models.heads.patches import check_patch_size
from futurelat.models.heads.standardize import TARGETS
from futurelat.models.heads.trunks.dit import CONDITIONINGS, DIT_POSITIONS, DiTTrunk


def _check_config(spec: LatentSpec, num_frames: int, context_latents: int, d_model: int, num_layers: int,
                  num_heads: int, mlp_ratio: float, patch_size: int, conditioning: str, context_dropout: float,
                  time_sampling: str, dropout: float, position: str, options: SamplingOptions) -> None:
    """Raise ``ValueError`` naming ``head.params.<key>`` for the first bad setting."""
    check_patch_size(patch_size, spec.grid)
    problems = [  # (is it bad, key, value, rule)
        (not 1 <= context_latents < num_frames, "context_latents", context_latents,
         f"must lie in [1, num_frames - 1 = {num_frames - 1}] (num_frames={num_frames} latent frames per clip)"),
        (conditioning not in CONDITIONINGS, "conditioning", conditioning, f"must be one of {CONDITIONINGS}"),
        (time_sampling not in TIME_SAMPLINGS, "time_sampling", time_sampling, f"must be one of {TIME_SAMPLINGS}"),
        (num_layers < 1, "num_layers", num_layers, "must be >= 1"),
        (d_model < 6, "d_model", d_model, "must be >= 6 (sin-cos positions of 3 axes)"),
        (num_heads < 1 or d_model % num_heads, "num_heads", num_heads, f"must be >= 1 and divide d_model={d_model}"),
        (position not in DIT_POSITIONS, "position", position, f"must be one of {DIT_POSITIONS}"),
        (position == "rope" and num_heads >= 1 and (d_model // num_heads < 6 or d_model // num_heads % 2),
         "position", position, f"needs an even head width d_model / num_heads >= 6 (a rotation pair per axis); "
         f"got {d_model}/{num_heads}"),
        (not mlp_ratio > 0, "mlp_ratio", mlp_ratio, "must be > 0"),
        (not 0 <= context_dropout < 1, "context_dropout", context_dropout, "must lie in [0, 1)"),
        (not 0 <= dropout < 1, "dropout", dropout, "must lie in [0, 1)"),
        (options.guidance_scale != 1 and context_dropout == 0, "context_dropout", context_dropout,
         f"must be > 0 for head.sampling.guidance_scale={options.guidance_scale} != 1 "
         "(the unconditional velocity is learned only from dropped contexts)"),
    ]
    for bad, key, value, rule in problems:
        if bad:
            raise ValueError(f"head.params.{key}={value!r} {rule}")

#: ``head.params`` defaults (:class:`futurelat.config.head.FlowDiTParams`): the constructor's too.
_DEFAULTS = FlowDiTParams()


class FlowDiTHead(ComposedHead):
    """Rectified-flow DiT over continuous latents ``(B, T, N, D)``; see the module docstring.

    A :class:`~futurelat.models.heads.composed.ComposedHead`: ``self.trunk`` is a
    :class:`~futurelat.models.heads.trunks.dit.DiTTrunk`, ``self.objective`` a
    :class:`~futurelat.models.heads.objectives.flow_matching.FlowMatching`. Works on the latents of
    any backbone (``needs_codes = False``). On a discrete backbone its
    continuous samples are snapped to the nearest codebook entries by the backbone's ``decode``.

    Args:
        spec: the backbone's :class:`LatentSpec` (``latent_dim`` ``D``, ``grid`` ``(h, w)``).
        num_frames: latent frames per training clip (``Tc + Tf``).
        context_latents: ``Tc``, the leading frames of a clip used as context (``1 <= Tc < num_frames``).
        d_model: ``d`` (>= 6, divisible by ``num_heads``). num_layers: DiT blocks.
        num_heads: attention heads. mlp_ratio: MLP hidden width in multiples of ``d``.
        patch_size: ``p``, side of the square patches of the latent grid; must divide ``h`` and ``w``.
        conditioning: ``"in_context"`` or ``"cross_attention"``.
        context_dropout: training probability in [0, 1) of replacing a sample's context with the
            null token (needed > 0 for classifier-free guidance).
        time_sampling: training time distribution, ``"uniform"`` or ``"logit_normal"``.
        sampling: ``{"solver": "euler" | "heun", "steps": int >= 1, "guidance_scale": float >= 0,
            "noise_scale": float >= 0}`` for :meth:`rollout`, kept in ``self.sampling`` (defaults:
            heun, 10, 1.0 = no guidance, 1.0 = the learned distribution; see
            :func:`~futurelat.models.heads.flow.sampling_options`).
        dropout: attention-probability and MLP-hidden dropout in [0, 1) (training only).
        position: ``"sincos"`` (added to the tokens) or ``"rope"`` (3-D rotary; needs an even head
            width ``d / num_heads >= 6``); see the module docstring.
        prediction: what the network outputs: ``"velocity"`` (DiT / rectified flow), or ``"data"``,
            the estimate ``x̂_1`` (x-prediction; Li & He 2025, "Back to Basics: Let Denoising
            Generative Models Denoise", arXiv:2511.13720), turned into the velocity
            ``(x̂_1 - x_t) / max(1 - t, 0.05)``, trained with the x-loss ``|x̂_1 - x_1|^2`` (the
            velocity MSE weighted by ``max(1 - t, 0.05)^2``: unweighted, the few times near 1 dominate
            with uniform time sampling). With ``"data"`` the
            network never has to reproduce the noise in its output, and a fresh head (output 0)
            samples the standardizer's mean (with ``target="residual"``: the last context frame
            plus the mean change). Heun sampling then ends with an Euler step (the velocity is
            undefined at ``t = 1``).
        target: what the flow generates: ``"absolute"``, the standardized future latents, or
            ``"residual"``, their change from the last context frame (standardized again with its
            own per-channel statistics, fitted on the first training batch like the latents'). On
            video whose latents mostly persist from frame to frame (static background, V-JEPA 2
            features) the residual is near zero almost everywhere and the flow only has to model
            what moves.

    Raises:
        ValueError: a bad setting; the message names ``head.params.<key>`` (or ``head.sampling.<key>``).
    """

    name = "flow_dit"
    needs_codes = False

    def __init__(self, spec: LatentSpec, num_frames: int, *, context_latents: int, d_model: int = _DEFAULTS.d_model,
                 num_layers: int = _DEFAULTS.num_layers, num_heads: int = _DEFAULTS.num_heads,
                 mlp_ratio: float = _DEFAULTS.mlp_ratio, patch_size: int = _DEFAULTS.patch_size,
                 conditioning: str = _DEFAULTS.conditioning, context_dropout: float = _DEFAULTS.context_dropout,
                 time_sampling: str = _DEFAULTS.time_sampling, sampling: Mapping[str, Any] | None = None,
                 dropout: float = _DEFAULTS.dropout, target: str = _DEFAULTS.target,
                 position: str = _DEFAULTS.position, prediction: str = _DEFAULTS.prediction):
        super().__init__()
        options = sampling_options(sampling)
        if target not in TARGETS:
            raise ValueError(f"head.params.target must be one of {', '.join(TARGETS)}; got {target!r}")
        if prediction not in PREDICTIONS:
            raise ValueError(f"head.params.prediction must be one of {', '.join(PREDICTIONS)}; got {prediction!r}")
        _check_config(spec, num_frames, context_latents, d_model, num_layers, num_heads, mlp_ratio, patch_size,
                      conditioning, context_dropout, time_sampling, dropout, position, options)
        self.spec, self.num_frames, self.context_latents = spec, num_frames, context_latents
        self.future_latents = num_frames - context_latents
        self.sampling = dict(sampling) if sampling is not None else {}
        self.trunk = DiTTrunk(latent_dim=spec.latent_dim, grid=spec.grid, patch_size=patch_size, d_model=d_model,
                              num_layers=num_layers, num_heads=num_heads, mlp_ratio=mlp_ratio,
                              conditioning=conditioning, dropout=dropout, position=position)
        self.objective = FlowMatching(spec, num_frames, context_latents=context_latents, context_dropout=context_dropout,
                                      time_sampling=time_sampling, prediction=prediction, target=target, name=self.name)

    def velocity(self, x_t: Tensor, t: Tensor, context: Tensor, uncond: Tensor) -> Tensor:
        """The predicted velocity ``(B, Tf', N, D)`` (standardized units) at noisy future latents ``x_t``
        ``(B, Tf', N, D)``, times ``t`` ``(B,)`` in [0, 1], standardized ``context`` ``(B, Tc', N, D)``;
        ``uncond`` ``(B,)`` bool drops a sample's context (:meth:`FlowMatching.velocity`)."""
        return self.objective.velocity(self.trunk, x_t, t, context, uncond)
