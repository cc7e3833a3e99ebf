"""``mamba`` head: Mamba-2 blocks that predict the next latent frame, as codes or as vectors.

Shape notation: ``B`` batch, ``T`` latent frames, ``N = h * w`` tokens per frame, ``K`` codebook
size, ``D`` latent channels, ``d`` model width; codes are ``(B, T, N)`` int64 in ``[0, K)``.

Two objectives (``head.params.objective``):

- ``"autoregressive"``: :class:`~futurelat.models.heads.objectives.code_prior.CodePrior`, a prior
  over a discrete backbone's codes, next-frame/next-token cross-entropy, sampled (the VQ-VAE +
  Mamba token prior). Input and output code embeddings may be tied (Press & Wolf 2017): a fresh
  model then starts near "copy the previous frame / code", a strong prior for video.
- ``"regression"``: :class:`~futurelat.models.heads.objectives.latent_regression.NextFrameRegression`,
  continuous latents ``(B, T, N, D)`` in, the next frame's latents out (the encoder-Mamba-decoder
  frame predictor); works on any backbone. In rollouts each prediction is fed back as the next
  input. Frame ordering only.

Two orderings (``head.params.ordering``), i.e. two trunks (:mod:`futurelat.models.heads.trunks.mamba`):

- ``"frame"``: the scan runs over time per grid position, then a depthwise conv and an MLP mix
  space inside each frame; the output at frame ``t`` predicts frame ``t + 1``. With
  ``patch_size = p`` each grid position holds a ``p x p`` patch (``N / p**2`` positions), which
  makes the blocks ``p**2`` times cheaper.
- ``"token"``: the codes of all frames are one raster-order sequence led by a start token;
  next-token cross-entropy, sampled token by token.

Rollouts process the context once with the parallel (chunked) scan, keep each layer's recurrent
state and then step at constant cost per frame/token, never re-running the prefix. Mamba: Gu & Dao
2023 (arXiv:2312.00752); Mamba-2 / SSD: Dao & Gu 2024 (arXiv:2405.21060).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from futurelat.config.head import MambaParams
from futurelat.models.base import LatentSpec
from futurelat.models.heads.composed import ComposedHead
from futurelat.models.heads.objectives.code_prior import CodePrior
from futurelat.models.heads.objectives.latent_regression import LOSSES, NextFrameRegression
from futurelat.models.heads.patches import check_patch_size
from futurelat.models.heads.pixel_loss import DecodedPixelLoss, check_pixel_loss
from futurelat.models.heads.sampling import sampling_options
from futurelat.models.heads.trunks.mamba import MambaFrameTrunk, MambaTokenTrunk, gpt2_init

ORDERINGS = ("frame", "token")
OBJECTIVES = ("autoregressive", "regression")

#: ``head.params`` defaults (:class:`futurelat.config.head.MambaParams`): the constructor's too.
_DEFAULTS = MambaParams()


class MambaHead(ComposedHead):
    """Mamba-2 next-frame predictor over codes ``(B, T, N)`` or latents ``(B, T, N, D)``; see the module docstring.

    A :class:`~futurelat.models.heads.composed.ComposedHead`: ``self.trunk`` is a
    :class:`~futurelat.models.heads.trunks.mamba.MambaFrameTrunk` (``ordering="frame"``) or
    :class:`~futurelat.models.heads.trunks.mamba.MambaTokenTrunk`, ``self.objective`` a
    :class:`~futurelat.models.heads.objectives.code_prior.CodePrior` or
    :class:`~futurelat.models.heads.objectives.latent_regression.NextFrameRegression`.

    Args:
        spec: the backbone's :class:`LatentSpec`; the autoregressive objective needs
            ``codebook_size`` (``K``); both need ``grid``.
        num_frames: latent frames per training clip (context + future); only recorded, since
            nothing in the model depends on the clip length.
        objective: ``"autoregressive"`` (codes, cross-entropy) or ``"regression"`` (latents).
        loss: regression only: ``"l1" | "mse" | "smooth_l1"`` on standardized latents.
        ordering: ``"frame"`` or ``"token"`` (the regression objective needs ``"frame"``).
        d_model: ``d``. num_layers: blocks. d_state, expand, head_dim, conv_kernel, chunk_size:
            the Mamba-2 mixer's (see :class:`~futurelat.models.heads.mamba_layers.Mamba2Mixer`).
        spatial_kernel: odd side of the depthwise conv over the ``(h, w)`` grid (frame ordering).
        patch_size: frame ordering only: each model position holds a ``p x p`` patch of codes
            (``M = N / p**2`` positions, ``p**2 * K`` logits each), which divides the cost of the
            blocks by ``p**2``; must divide the grid. Ignored (1) for the token ordering.
        mlp_ratio: hidden width of each block's MLP, in multiples of ``d``.
        tie_embeddings: share the code embedding with the output layer.
        dropout: on residual branches and MLP hidden units (training only).
        input_noise: in training, the fraction of *input* codes replaced by uniformly random codes
            (targets stay clean), so the prior learns to recover from its own sampling errors during
            rollouts instead of compounding them (exposure bias; cf. the noise augmentation of
            GameNGen, Valevski et al. 2024). Regression: the standard deviation of Gaussian noise
            added to the standardized input latents, for the same reason. 0 = plain teacher forcing.
        backend: ``"auto" | "mamba_ssm" | "torch"``; resolved name in ``self.backend``.
        pixel_loss_weight, pixel_loss_frames, pixel_ssim_weight: regression only: the decoded pixel loss
            (:mod:`~futurelat.models.heads.pixel_loss`), off at ``0``; as for the transformer head.
        sampling: ``{"greedy", "temperature", "top_k", "steps", "choice_temperature"}`` for
            :meth:`rollout`, kept in ``self.sampling`` (see :func:`~futurelat.models.heads.sampling.sample_codes`
            and :class:`futurelat.config.head.CodeSampling`); ``None``: the defaults.
        frame_decoding: autoregressive, frame ordering: ``"independent"`` (all codes of the next frame
            drawn at once) or ``"maskgit"`` (masked token modelling, each frame filled in
            ``sampling.steps`` passes; :mod:`~futurelat.models.heads.objectives.code_prior`).
        scheduled_sampling: autoregressive, frame ordering, independent decoding: the share of input
            frames replaced in training by the prior's own draws (parallel scheduled sampling,
            :mod:`~futurelat.models.heads.objectives.code_prior`); 0 = off.
        unroll_frames: autoregressive, frame ordering, independent decoding: the last input frames of
            each training clip fed as the prior's own mean-field predictions, with no gradient through
            them (unrolled training, :mod:`~futurelat.models.heads.objectives.code_prior`); 0 = off.
        static_keep: autoregressive, frame ordering, independent decoding: the share in ``(0, 1]`` of
            static tokens (next patch = this patch) scored in training, each weighted by its inverse;
            moving tokens are all scored (:mod:`~futurelat.models.heads.objectives.patch_loss`); 1 = all.
            The regression objective ignores it, as it ignores ``sampling``.
        motion_copy: autoregressive, frame ordering, independent decoding: 0 (off) or the radius in codes of
            the motion copy that each next frame mixes in
            (:mod:`~futurelat.models.heads.objectives.motion_copy`).

    Raises:
        ValueError: the autoregressive objective on a continuous ``spec`` (``codebook_size is
            None``), an unknown objective/loss/ordering, regression with the token ordering, an even
            ``spatial_kernel``, or bad mixer sizes / sampling keys; the message names the key.
        ImportError: ``backend="mamba_ssm"`` without the ``mamba-ssm`` package.
    """

    name = "mamba"

    @classmethod
    def config_needs_codes(cls, params: dict) -> bool:
        return params.get("objective", "autoregressive") == "autoregressive"

    def __init__(self, spec: LatentSpec, num_frames: int, *, objective: str = _DEFAULTS.objective,
                 loss: str = _DEFAULTS.loss, ordering: str = _DEFAULTS.ordering, d_model: int = _DEFAULTS.d_model,
                 num_layers: int = _DEFAULTS.num_layers, d_state: int = _DEFAULTS.d_state,
                 expand: int = _DEFAULTS.expand, head_dim: int = _DEFAULTS.head_dim,
                 conv_kernel: int = _DEFAULTS.conv_kernel, spatial_kernel: int = _DEFAULTS.spatial_kernel,
                 patch_size: int = _DEFAULTS.patch_size, mlp_ratio: float = _DEFAULTS.mlp_ratio,
                 tie_embeddings: bool = _DEFAULTS.tie_embeddings, chunk_size: int = _DEFAULTS.chunk_size,
                 dropout: float = _DEFAULTS.dropout, input_noise: float = _DEFAULTS.input_noise,
                 backend: str = _DEFAULTS.backend, sampling: Mapping[str, Any] | None = None,
                 pixel_loss_weight: float = _DEFAULTS.pixel_loss_weight,
                 pixel_loss_frames: int = _DEFAULTS.pixel_loss_frames,
                 pixel_ssim_weight: float = _DEFAULTS.pixel_ssim_weight,
                 frame_decoding: str = _DEFAULTS.frame_decoding,
                 scheduled_sampling: float = _DEFAULTS.scheduled_sampling,
                 unroll_frames: int = _DEFAULTS.unroll_frames, static_keep: float = _DEFAULTS.static_keep,
                 motion_copy: int = _DEFAULTS.motion_copy):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"head.params.objective must be one of {OBJECTIVES}; got {objective!r}")
        regression = objective == "regression"
        check_pixel_loss(pixel_loss_weight, pixel_loss_frames, regression, pixel_ssim_weight)
        self.pixel_loss = DecodedPixelLoss(pixel_loss_weight, pixel_loss_frames, pixel_ssim_weight)
        if not regression and spec.codebook_size is None:
            raise ValueError("the mamba head's autoregressive objective predicts codes and needs a discrete backbone: "
                             f"spec.codebook_size is None for {spec}; use a backbone with a codebook (e.g. vqvae) "
                             "or head.params.objective=regression")
        if loss not in LOSSES:
            raise ValueError(f"head.params.loss must be one of {tuple(LOSSES)}; got {loss!r}")
        if ordering not in ORDERINGS:
            raise ValueError(f"head.params.ordering must be one of {ORDERINGS}; got {ordering!r}")
        if regression and ordering != "frame":
            raise ValueError(f"head.params.objective=regression needs head.params.ordering=frame; got {ordering!r}")
        if spatial_kernel < 1 or spatial_kernel % 2 == 0:
            raise ValueError(f"head.params.spatial_kernel must be a positive odd number; got {spatial_kernel}")
        patch = patch_size if ordering == "frame" else 1
        check_patch_size(patch, spec.grid)
        if not (0.0 <= input_noise < 1.0 or (regression and input_noise >= 0)):
            raise ValueError(f"head.params.input_noise must lie in [0, 1) (regression: >= 0); got {input_noise}")
        sampling_options(sampling)  # fail early on bad keys
        self.sampling = dict(sampling) if sampling is not None else {}
        self.spec, self.num_frames, self.needs_codes = spec, num_frames, not regression
        grid = (spec.grid[0] // patch, spec.grid[1] // patch)
        # The trunk's layers are made first, then the objective's (and their random draws in that order).
        mixer = dict(d_model=d_model, num_layers=num_layers, grid=grid, d_state=d_state, expand=expand,
                     head_dim=head_dim, conv_kernel=conv_kernel, chunk_size=chunk_size, backend=backend,
                     mlp_ratio=mlp_ratio, dropout=dropout)
        if ordering == "frame":
            self.trunk = MambaFrameTrunk(spatial_kernel=spatial_kernel, **mixer)
        else:
            self.trunk = MambaTokenTrunk(**mixer)
        if regression:
            self.objective = NextFrameRegression(spec, patch_size=patch, width=d_model, loss=loss,
                                                 input_noise=input_noise, pixel_loss=self.pixel_loss, name=self.name)
        else:
            self.objective = CodePrior(spec, ordering=ordering, patch_size=patch, width=d_model,
                                       readout="tied" if tie_embeddings else "untied", input_noise=input_noise,
                                       name=self.name, frame_decoding=frame_decoding,
                                       scheduled_sampling=scheduled_sampling, unroll_frames=unroll_frames,
                                       static_keep=static_keep, motion_copy=motion_copy)
            self.objective.check_sampling(sampling)
        self.backend = self.trunk.backend
        gpt2_init(self, self.trunk, num_layers)

    def prefill(self, context: Tensor) -> tuple[Tensor, Any]:
        """Run the context once, in parallel → (the next prediction, recurrent state).

        Autoregressive: codes ``(B, Tc, N)`` (or a flat raster prefix ``(B, L)`` for ``"token"``) →
        logits (:meth:`CodePrior.prefill`). Regression: standardized latents ``(B, Tc, N, D)`` → the
        standardized prediction ``(B, N, D)`` of frame ``Tc``. Feed what comes next to :meth:`step`.
        """
        return self.objective.prefill(self.trunk, context)

    def step(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Advance the recurrent state by one frame / code at constant cost → (next prediction, state).

        Autoregressive: codes ``(B, N)`` (``"frame"``) or ``(B, 1)`` (``"token"``) → logits.
        Regression: a standardized frame ``(B, N, D)`` → the next frame's ``(B, N, D)``.
        """
        return self.objective.step(self.trunk, x, state)

    def logits(self, codes: Tensor) -> Tensor:
        """Teacher-forced logits ``(B, T', N, K)`` of codes ``(B, T, N)`` (:meth:`CodePrior.logits`)."""
        return self.objective.logits(self.trunk, codes)
