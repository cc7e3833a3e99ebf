"""``transformer`` head: a transformer over a clip's latent tokens, with two objectives.

Shape notation: ``B`` batch, ``T`` latent frames (``Tc`` context + ``Tf`` future), ``N = h * w``
tokens per frame, ``D`` latent channels, ``K`` codebook size, ``p`` patch size, ``M = N / p**2``
model tokens per frame, ``d`` model width. Latents are ``(B, T, N, D)`` float, codes ``(B, T, N)``
int64 in ``[0, K)``.

The head is a :class:`~futurelat.models.heads.trunks.transformer.TransformerTrunk` (attention
through ``scaled_dot_product_attention``, or FlexAttention where a mask or ALiBi bias is needed:
``backend``, :mod:`~futurelat.models.heads.flex`; no position table caps the length, so a prior
built for ``T`` latent frames rolls out any number of them) plus, per ``head.params.objective``:

- ``"regression"``: :class:`~futurelat.models.heads.objectives.latent_regression.BlockRegression`,
  a deterministic predictor (FutureLatents' PredictorTransformer): context tokens and one learned
  query token per future patch go through self-attention with no mask (chosen over
  cross-attention so one block type serves both objectives) and all future frames come out of one
  forward pass. Works on the latents of continuous and discrete backbones alike.
- ``"autoregressive"``: :class:`~futurelat.models.heads.objectives.code_prior.CodePrior`, a
  VideoGPT-style prior over codes (Yan et al. 2021, arXiv:2104.10157), next-code cross-entropy.
  ``ordering: "frame"`` is block-causal over frames (all codes of frame ``t + 1`` from frames
  ``<= t`` at once, the CPU-feasible choice); ``ordering: "token"`` is VideoGPT's raster order led
  by a start token, causal, one code per step (``patch_size`` is ignored). Sampling uses one
  :class:`~futurelat.models.heads.attention.KVCache` per block: the context is read once, then each
  frame/code costs one forward of the new tokens against the cached keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from futurelat.config.head import TransformerParams
from futurelat.models.base import LatentSpec
from futurelat.models.heads.composed import ComposedHead
from futurelat.models.heads.flex import check_backend
from futurelat.models.heads.objectives.code_prior import CodePrior
from futurelat.models.heads.objectives.latent_regression import LOSSES, BlockRegression
from futurelat.models.heads.patches import check_patch_size
from futurelat.models.heads.pixel_loss import DecodedPixelLoss, check_pixel_loss
from futurelat.models.heads.positions import POSITIONS
from futurelat.models.heads.sampling import sampling_options
from futurelat.models.heads.standardize import TARGETS
from futurelat.models.heads.trunks.transformer import TransformerTrunk

OBJECTIVES = ("regression", "autoregressive")
ATTENTIONS = ("full", "factorized")
CONV_FACTORIZATIONS = ("joint", "2+1d")
ORDERINGS = ("frame", "token")


# ---------------------------------------------------------------------------------------------
# Config checks
# ---------------------------------------------------------------------------------------------


def _check_choice(key: str, value: Any, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"head.params.{key} must be one of {', '.join(valid)}; got {value!r}")


def _check_range(key: str, value: Any, ok: bool, rule: str) -> None:
    if not ok:
        raise ValueError(f"head.params.{key} must be {rule}; got {value!r}")


def _check_config(spec: LatentSpec, num_frames: int, objective: str, ordering: str, context_latents: int,
                  d_model: int, num_layers: int, num_heads: int, mlp_ratio: float, dropout: float, patch: int,
                  position: str, loss: str, query_chunk: int, target: str, attention: str,
                  spatial_kernel: int, temporal_kernel: int, conv_factorization: str, backend: str) -> None:
    """Raise ``ValueError`` naming ``head.params.<key>`` and its valid values for a bad config."""
    for key, value, valid in (("objective", objective, OBJECTIVES), ("ordering", ordering, ORDERINGS),
                              ("position", position, POSITIONS), ("loss", loss, tuple(LOSSES)),
                              ("target", target, TARGETS), ("attention", attention, ATTENTIONS),
                              ("conv_factorization", conv_factorization, CONV_FACTORIZATIONS)):
        _check_choice(key, value, valid)
    check_backend(backend, dropout)
    if attention == "factorized" and (objective != "regression" or position == "alibi"):
        raise ValueError("head.params.attention=factorized is for the regression objective with rope or sincos "
                         f"positions (no causal mask, no KV cache); got objective={objective!r}, "
                         f"position={position!r}")
    _check_range("spatial_kernel", spatial_kernel, spatial_kernel == 0 or (spatial_kernel > 0 and spatial_kernel % 2),
                 "0 (off) or a positive odd number")
    _check_range("temporal_kernel", temporal_kernel, temporal_kernel > 0 and temporal_kernel % 2 == 1
                 and (temporal_kernel == 1 or spatial_kernel > 0),
                 "a positive odd number, and 1 unless spatial_kernel > 0 (it extends that conv over frames)")
    if spatial_kernel and objective != "regression":
        raise ValueError("head.params.spatial_kernel is for the regression objective (a conv over a whole frame "
                         f"would let a code see codes after it under a causal mask); got objective={objective!r}")
    if objective == "autoregressive" and spec.codebook_size is None:
        raise ValueError("head.params.objective=autoregressive predicts codes, but the backbone has no codes "
                         f"(spec.codebook_size is None for {spec}); use objective: regression for a continuous "
                         "backbone, or a discrete backbone (e.g. vqvae)")
    _check_range("context_latents", context_latents, 1 <= context_latents < num_frames,
                 f"in [1, num_frames) = [1, {num_frames}) latent frames per clip")
    for key, value in (("d_model", d_model), ("num_layers", num_layers), ("num_heads", num_heads),
                       ("query_chunk", query_chunk)):
        _check_range(key, value, value >= 1, ">= 1")
    _check_range("num_heads", num_heads, d_model % num_heads == 0, f"a divisor of head.params.d_model={d_model}")
    _check_range("mlp_ratio", mlp_ratio, mlp_ratio > 0, "> 0")
    _check_range("dropout", dropout, 0 <= dropout < 1, "in [0, 1)")
    check_patch_size(patch, spec.grid)
    width = d_model // num_heads if position == "rope" else d_model
    _check_range("d_model", d_model, position == "alibi" or (width % 2 == 0 and width >= 6),
                 f"such that the {'head width d_model / num_heads' if position == 'rope' else 'width'} "
                 f"is even and >= 6 for position={position} (one sin/cos pair per axis t, y, x)")


# ---------------------------------------------------------------------------------------------
# The head
# ---------------------------------------------------------------------------------------------

#: ``head.params`` defaults (:class:`futurelat.config.head.TransformerParams`): the constructor's too.
_DEFAULTS = TransformerParams()


class TransformerHead(ComposedHead):
    """Transformer head over ``(B, T, N, D)`` latents or ``(B, T, N)`` codes; see the module docstring.

    A :class:`~futurelat.models.heads.composed.ComposedHead`: ``self.trunk`` is a
    :class:`~futurelat.models.heads.trunks.transformer.TransformerTrunk` and ``self.objective`` a
    :class:`~futurelat.models.heads.objectives.latent_regression.BlockRegression` or
    :class:`~futurelat.models.heads.objectives.code_prior.CodePrior`.

    Args:
        spec: the backbone's :class:`LatentSpec` (``latent_dim`` D, ``grid`` (h, w), ``codebook_size``).
        num_frames: latent frames per training clip, ``Tc + Tf``.
        objective: ``"regression"`` (latents, any backbone) or ``"autoregressive"`` (codes, needs
            ``spec.codebook_size``). Sets the instance attribute ``needs_codes``.
        ordering: autoregressive only: ``"frame"`` (block-causal over frames) or ``"token"`` (raster).
        context_latents: ``Tc``, in ``[1, num_frames)``; the regression predicts the other
            ``Tf = num_frames - Tc`` frames of a clip. The autoregressive objective models every
            frame and only records it.
        d_model: ``d``. num_layers: transformer blocks. num_heads: attention heads, divide ``d``.
        mlp_ratio: MLP hidden width in multiples of ``d``.
        dropout: on attention weights, MLP hidden units and residual branches (training only).
        patch_size: ``p``, divides the grid: each token holds a ``p x p`` patch (regression and frame
            ordering), ``p**2`` times fewer tokens. Ignored (1) for the token ordering.
        position: ``"alibi" | "rope" | "sincos"`` (see :mod:`~futurelat.models.heads.positions`); rope
            needs an even head width ``d / num_heads >= 6``, sincos an even ``d >= 6``. ALiBi's bias depends on
            ``|i - j|`` only, so wherever attention is not causal (the regression, and inside a frame
            of the frame ordering) it cannot tell left from right; it suits the token ordering best.
        loss: regression only: ``"l1" | "mse" | "smooth_l1"`` (Huber, beta 1) on standardized latents.
            ``l1`` can stall at the per-token median, i.e. predicting background everywhere on
            sparse scenes.
        query_chunk: queries per attention call when a mask/ALiBi bias is needed (bounds memory).
        target: regression only: ``"absolute"`` (the future latents) or ``"residual"`` (their change
            from the last context frame, added back to it: a fresh head, whose output layer is
            zero, starts as the copy-last-frame baseline).
        attention: regression only: ``"full"`` (every token attends to every token, ``(T M)**2``
            scores per layer) or ``"factorized"`` (space then time attention,
            :class:`~futurelat.models.heads.attention.FactorizedBlock`, ``T M (M + T)`` scores): the
            cheaper one affords smaller patches on a CPU.
        spatial_kernel: regression only: ``0`` (off) or an odd ``k``: before every
            block, ``x + DWConv_k(x)`` over each frame's ``(h/p, w/p)`` token grid (a depthwise
            ``k x k`` conv, zero at init): the conditional positional encoding (PEG) of CPVT (Chu et
            al. 2021, arXiv:2102.10882), a local, translation-equivariant mixing that attention
            alone learns slowly.
        temporal_kernel: regression with ``spatial_kernel > 0`` only: ``1`` (the conv sees one
            frame) or an odd ``k_t``: that conv becomes a depthwise ``k_t x k x k`` conv over
            the clip's ``(frames, rows, columns)`` tokens, so every block starts by mixing each token
            with its neighbours in the adjacent frames too (local motion, as the time-stacked
            convolutions of SimVP do: Gao et al. 2022, arXiv:2206.05099).
        conv_factorization: with ``temporal_kernel > 1``: ``"joint"`` (one ``k_t x k x k``
            depthwise Conv3d) or ``"2+1d"``: the ``k x k`` conv per frame, then a
            depthwise ``k_t`` conv per token across frames
            (:class:`~futurelat.models.heads.attention.TemporalDepthwiseConv`), each a residual
            branch: the R(2+1)D factorization (Tran et al. 2018, arXiv:1711.11248). It reaches the
            same neighbourhood over two steps, for less compute than the joint conv.
        pixel_loss_weight: regression only: ``0`` (off) or the weight of the decoded
            pixel loss added to the latent loss (:mod:`~futurelat.models.heads.pixel_loss`):
            ``pixel_loss_frames`` predicted frames per clip go through the frozen decoder and are
            compared with the decoded truth by per-pixel MSE. Needs a backbone with a decoder.
        pixel_loss_frames: future frames per clip decoded for that loss (cost grows with it).
        pixel_ssim_weight: regression only: ``0`` (off) or the weight of ``1 - SSIM`` of the same
            decoded frames, added to the loss: it keeps uncertain background black where the MSE
            term alone paints grey haze.
        backend: ``"auto" | "sdpa" | "flex"``: the kernel of attention with a mask or ALiBi bias over a
            whole sequence (training, the prefill of a rollout); decode steps use SDPA. ``"auto"``
            is compiled FlexAttention on CUDA and SDPA elsewhere (:mod:`~futurelat.models.heads.flex`).
        sampling: ``{"greedy", "temperature", "top_k"}`` for autoregressive rollouts, kept in
            ``self.sampling`` (see :func:`~futurelat.models.heads.sampling.sample_codes`); ``None``: greedy.
        frame_decoding, scheduled_sampling, unroll_frames, static_keep, motion_copy: autoregressive, ordering ``"frame"``: as for
            :class:`~futurelat.models.heads.mamba.MambaHead` (the same
            :class:`~futurelat.models.heads.objectives.code_prior.CodePrior`).

    Raises:
        ValueError: a bad key (the message names ``head.params.<key>`` and the valid values), an
            autoregressive objective on a continuous ``spec``, or bad ``sampling`` keys.
    """

    name = "transformer"

    @classmethod
    def config_needs_codes(cls, params: dict) -> bool:
        return params.get("objective", "regression") == "autoregressive"

    def __init__(self, spec: LatentSpec, num_frames: int, *, context_latents: int,
                 objective: str = _DEFAULTS.objective, ordering: str = _DEFAULTS.ordering,
                 d_model: int = _DEFAULTS.d_model, num_layers: int = _DEFAULTS.num_layers,
                 num_heads: int = _DEFAULTS.num_heads, mlp_ratio: float = _DEFAULTS.mlp_ratio,
                 dropout: float = _DEFAULTS.dropout, patch_size: int = _DEFAULTS.patch_size,
                 position: str = _DEFAULTS.position, loss: str = _DEFAULTS.loss,
                 query_chunk: int = _DEFAULTS.query_chunk, sampling: Mapping[str, Any] | None = None,
                 target: str = _DEFAULTS.target, attention: str = _DEFAULTS.attention,
                 spatial_kernel: int = _DEFAULTS.spatial_kernel, temporal_kernel: int = _DEFAULTS.temporal_kernel,
                 conv_factorization: str = _DEFAULTS.conv_factorization,
                 pixel_loss_weight: float = _DEFAULTS.pixel_loss_weight,
                 pixel_loss_frames: int = _DEFAULTS.pixel_loss_frames,
                 pixel_ssim_weight: float = _DEFAULTS.pixel_ssim_weight, backend: str = _DEFAULTS.backend,
                 frame_decoding: str = _DEFAULTS.frame_decoding,
                 scheduled_sampling: float = _DEFAULTS.scheduled_sampling,
                 unroll_frames: int = _DEFAULTS.unroll_frames, static_keep: float = _DEFAULTS.static_keep,
                 motion_copy: int = _DEFAULTS.motion_copy):
        super().__init__()
        check_pixel_loss(pixel_loss_weight, pixel_loss_frames, objective == "regression", pixel_ssim_weight)
        patch = 1 if objective == "autoregressive" and ordering == "token" else patch_size
        _check_config(spec, num_frames, objective, ordering, context_latents, d_model, num_layers, num_heads,
                      mlp_ratio, dropout, patch, position, loss, query_chunk, target, attention, spatial_kernel,
                      temporal_kernel, conv_factorization, backend)
        sampling_options(sampling)  # fail early on bad keys
        self.sampling = dict(sampling) if sampling is not None else {}
        self.needs_codes = objective == "autoregressive"
        self.spec, self.num_frames = spec, num_frames
        self.context_latents, self.future_latents = context_latents, num_frames - context_latents
        self.pixel_loss = DecodedPixelLoss(pixel_loss_weight, pixel_loss_frames, pixel_ssim_weight)
        model_grid = (spec.grid[0] // patch, spec.grid[1] // patch)
        # The objective's layers are made first, then the trunk's (and their random draws in that order).
        if self.needs_codes:
            self.objective = CodePrior(spec, ordering=ordering, patch_size=patch, width=d_model, readout="linear",
                                       input_noise=0.0, name=self.name, frame_decoding=frame_decoding,
                                       scheduled_sampling=scheduled_sampling, unroll_frames=unroll_frames,
                                       static_keep=static_keep, motion_copy=motion_copy)
            self.objective.check_sampling(sampling)
            mask = "block" if ordering == "frame" else "causal"
        else:
            self.objective = BlockRegression(spec, num_frames, context_latents=context_latents, patch_size=patch,
                                             width=d_model, loss=loss, target=target, pixel_loss=self.pixel_loss,
                                             name=self.name)
            mask = "none"
        self.trunk = TransformerTrunk(d_model=d_model, num_layers=num_layers, num_heads=num_heads, mlp_ratio=mlp_ratio,
                                      dropout=dropout, position=position, mask=mask, attention=attention,
                                      grid=model_grid, query_chunk=query_chunk, spatial_kernel=spatial_kernel,
                                      temporal_kernel=temporal_kernel, conv_factorization=conv_factorization,
                                      backend=backend)
        self._init_objective(patch)

    def _init_objective(self, patch: int) -> None:
        """Unit-scale inputs, zero output layer (the trunk initializes itself, GPT-2 style).

        Input tokens start at unit scale like the sin-cos table added to them: code embeddings
        ``N(0, 1/p**2)`` summed over a patch's ``p**2`` codes, the latent projection ``N(0, 1/fan_in)``
        on standardized latents, the future query ``N(0, 1)``. The zero output layer starts the
        prior at uniform logits and the regression at the latent mean (residual: the last frame).
        """
        objective = self.objective
        if self.needs_codes:
            nn.init.normal_(objective.code_embed.weight, std=1 / patch)
            if objective.frame_decoding == "maskgit":
                nn.init.normal_(objective.next_embed.weight, std=1 / patch)
        else:
            nn.init.normal_(objective.to_tokens.weight, std=objective.to_tokens.in_features ** -0.5)
            nn.init.zeros_(objective.to_tokens.bias)
            nn.init.normal_(objective.future_query)
        nn.init.zeros_(objective.to_out.weight)
        nn.init.zeros_(objective.to_out.bias)

    def _require_codes(self, method: str) -> CodePrior:
        if not self.needs_codes:
            raise ValueError(f"TransformerHead.{method} needs objective=autoregressive; this head is 'regression'")
        return self.objective

    def logits(self, codes: Tensor) -> Tensor:
        """Teacher-forced logits ``(B, T', N, K)`` of codes ``(B, T, N)`` (:meth:`CodePrior.logits`).

        Raises:
            ValueError: the objective is not autoregressive.
        """
        return self._require_codes("logits").logits(self.trunk, codes)

    def prefill(self, context: Tensor) -> tuple[Tensor, Any]:
        """Read context codes ``(B, Tc, N)`` → (next logits, KV caches) (:meth:`CodePrior.prefill`).

        Raises:
            ValueError: the objective is not autoregressive.
        """
        return self._require_codes("prefill").prefill(self.trunk, context)

    def step(self, codes: Tensor, caches: Any) -> tuple[Tensor, Any]:
        """Feed drawn codes → (next logits, caches grown in place) (:meth:`CodePrior.step`).

        Raises:
            ValueError: the objective is not autoregressive.
        """
        return self._require_codes("step").step(self.trunk, codes, caches)
