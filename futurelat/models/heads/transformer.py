"""``transformer`` head: a transformer over a clip's latent tokens, with two objectives.

Shape notation: ``B`` batch, ``T`` latent frames (``Tc`` context + ``Tf`` future), ``N = h * w``
tokens per frame, ``D`` latent channels, ``K`` codebook size, ``p`` patch size, ``M = N / p**2``
model tokens per frame, ``d`` model width. Latents are ``(B, T, N, D)`` float, codes ``(B, T, N)``
int64 in ``[0, K)``.

Objectives (``head.params.objective``):

- ``"regression"``: a deterministic predictor (FutureLatents' PredictorTransformer). The ``Tc``
  context frames become tokens (one per ``p x p`` patch, a linear map of its ``p*p*D`` values);
  the ``Tf`` future frames are query tokens, all one shared learned vector told apart only by their
  positions. The ``(Tc + Tf) * M`` tokens go through self-attention with no mask (context and
  queries see each other; chosen over cross-attention so one block type serves both objectives),
  and the query outputs map linearly back to ``p*p*D`` latent values: all future frames in one
  forward pass. Works on the latents of continuous and discrete backbones alike; a discrete
  backbone's ``decode`` snaps the predicted vectors to its codebook.
- ``"autoregressive"``: a VideoGPT-style prior over codes (Yan et al. 2021, arXiv:2104.10157),
  next-code cross-entropy. ``ordering: "frame"`` is block-causal over frames: a token holds the
  codes of a ``p x p`` patch (the sum of one learned embedding per (position in patch, code)),
  attends to its own frame and all earlier ones, and predicts the ``p*p*K`` logits of the same
  patch in the next frame, so all codes of frame ``t + 1`` come from frames ``<= t`` at once (the
  CPU-feasible default). ``ordering: "token"`` is VideoGPT's raster order (frame, row, column) led
  by a start token, causal, one code per step (``patch_size`` is ignored). Sampling uses one
  :class:`~futurelat.models.heads.attention.KVCache` per block: the context is read once, then each
  frame/code costs one forward of the new tokens against the cached keys.

Position encodings (``alibi``, ``rope``, ``sincos``), masks and the KV cache are in
:mod:`futurelat.models.heads.attention`; none caps the sequence length.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from futurelat.models.base import Head, LatentSpec, Latents, check_codes
from futurelat.models.heads.attention import (POSITIONS, Block, FactorizedBlock, KVCache, TemporalDepthwiseConv,
                                              channels_last_weight, conv_over_clip, conv_over_grid, grid_coords,
                                              sincos_3d)
from futurelat.models.heads.checkpointing import CheckpointableBlocks
from futurelat.models.heads.latent_io import TARGETS, LatentStandardizer, check_patch_size, patchify, unpatchify
from futurelat.models.heads.pixel_loss import DecodedPixelLoss, check_pixel_loss
from futurelat.models.heads.sampling import code_cross_entropy, sample_codes, sampling_options

OBJECTIVES = ("regression", "autoregressive")
ATTENTIONS = ("full", "factorized")
CONV_FACTORIZATIONS = ("joint", "2+1d")
ORDERINGS = ("frame", "token")
LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss, "smooth_l1": F.smooth_l1_loss}


# ---------------------------------------------------------------------------------------------
# Config checks
# ---------------------------------------------------------------------------------------------


def _check_choice(key: str, value: Any, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"head.params.{key} must be one of {', '.join(valid)}; got {value!r}")


def _check_range(key: str, value: Any, ok: bool, rule: str) -> None:
    if not ok:
        raise ValueError(f"head.params.{key} must be {rule}; got {value!r}")


def _check_config(spec: LatentSpec, num_frames: int, objective: str, ordering: str, context_frames: int,
                  d_model: int, num_layers: int, num_heads: int, mlp_ratio: float, dropout: float, patch: int,
                  position: str, loss: str, query_chunk: int, target: str, attention: str,
                  spatial_kernel: int, temporal_kernel: int, conv_factorization: str) -> None:
    """Raise ``ValueError`` naming ``head.params.<key>`` and its valid values for a bad config."""
    for key, value, valid in (("objective", objective, OBJECTIVES), ("ordering", ordering, ORDERINGS),
                              ("position", position, POSITIONS), ("loss", loss, tuple(LOSSES)),
                              ("target", target, TARGETS), ("attention", attention, ATTENTIONS),
                              ("conv_factorization", conv_factorization, CONV_FACTORIZATIONS)):
        _check_choice(key, value, valid)
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
    _check_range("context_frames", context_frames, 1 <= context_frames < num_frames,
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


class TransformerHead(Head):
    """Transformer head over ``(B, T, N, D)`` latents or ``(B, T, N)`` codes; see the module docstring.

    Args:
        spec: the backbone's :class:`LatentSpec` (``latent_dim`` D, ``grid`` (h, w), ``codebook_size``).
        num_frames: latent frames per training clip, ``Tc + Tf``.
        objective: ``"regression"`` (latents, any backbone) or ``"autoregressive"`` (codes, needs
            ``spec.codebook_size``). Sets the instance attribute ``needs_codes``.
        ordering: autoregressive only: ``"frame"`` (block-causal over frames) or ``"token"`` (raster).
        context_frames: ``Tc``, in ``[1, num_frames)``; the regression predicts the other
            ``Tf = num_frames - Tc`` frames of a clip. The autoregressive objective models every
            frame and only records it.
        d_model: ``d``. num_layers: transformer blocks. num_heads: attention heads, divide ``d``.
        mlp_ratio: MLP hidden width in multiples of ``d``.
        dropout: on attention weights, MLP hidden units and residual branches (training only).
        patch_size: ``p``, divides the grid: each token holds a ``p x p`` patch (regression and frame
            ordering), ``p**2`` times fewer tokens. Ignored (1) for the token ordering.
        position: ``"alibi" | "rope" | "sincos"`` (see :mod:`~futurelat.models.heads.attention`); rope
            needs an even head width ``d / num_heads >= 6``, sincos an even ``d >= 6``. Rope, the
            default, learned the toy tasks of the tests fastest. ALiBi's bias depends on
            ``|i - j|`` only, so wherever attention is not causal (the regression, and inside a frame
            of the frame ordering) it cannot tell left from right; it suits the token ordering best.
        loss: regression only: ``"l1" | "mse" | "smooth_l1"`` (Huber, beta 1) on standardized latents.
            ``mse`` is the default because ``l1`` can stall at the per-token median, i.e. predicting
            background everywhere on sparse scenes (a moving bar, Moving MNIST digits).
        query_chunk: queries per attention call when a mask/ALiBi bias is needed (bounds memory).
        target: regression only: ``"absolute"`` (the future latents) or ``"residual"`` (their change
            from the last context frame, added back to it: a fresh head, whose output layer is
            zero, starts as the copy-last-frame baseline).
        attention: regression only: ``"full"`` (every token attends to every token, ``(T M)**2``
            scores per layer) or ``"factorized"`` (space then time attention,
            :class:`~futurelat.models.heads.attention.FactorizedBlock`, ``T M (M + T)`` scores): the
            cheaper one affords smaller patches on a CPU.
        spatial_kernel: regression only: ``0`` (off, the default) or an odd ``k``: before every
            block, ``x + DWConv_k(x)`` over each frame's ``(h/p, w/p)`` token grid (a depthwise
            ``k x k`` conv, zero at init): the conditional positional encoding (PEG) of CPVT (Chu et
            al. 2021, arXiv:2102.10882), a local, translation-equivariant mixing that attention
            alone learns slowly.
        temporal_kernel: regression with ``spatial_kernel > 0`` only: ``1`` (the default: the conv
            sees one frame) or an odd ``k_t``: that conv becomes a depthwise ``k_t x k x k`` conv over
            the clip's ``(frames, rows, columns)`` tokens, so every block starts by mixing each token
            with its neighbours in the adjacent frames too (local motion, as the time-stacked
            convolutions of SimVP do: Gao et al. 2022, arXiv:2206.05099).
        conv_factorization: with ``temporal_kernel > 1``: ``"joint"`` (the default: one
            ``k_t x k x k`` depthwise Conv3d) or ``"2+1d"``: the ``k x k`` conv per frame, then a
            depthwise ``k_t`` conv per token across frames
            (:class:`~futurelat.models.heads.attention.TemporalDepthwiseConv`), each a residual
            branch: the R(2+1)D factorization (Tran et al. 2018, arXiv:1711.11248). It reaches the
            same neighbourhood (over two steps) at a third of the joint conv's CPU cost.
        pixel_loss_weight: regression only: ``0`` (off, the default) or the weight of the decoded
            pixel loss added to the latent loss (:mod:`~futurelat.models.heads.pixel_loss`):
            ``pixel_loss_frames`` predicted frames per clip go through the frozen decoder and are
            compared with the decoded truth by per-pixel MSE. Needs a backbone with a decoder.
        pixel_loss_frames: future frames per clip decoded for that loss (cost grows with it).
        sampling: ``{"greedy", "temperature", "top_k"}`` for autoregressive rollouts, kept in
            ``self.sampling`` (see :func:`~futurelat.models.heads.sampling.sample_codes`).

    Raises:
        ValueError: a bad key (the message names ``head.params.<key>`` and the valid values), an
            autoregressive objective on a continuous ``spec``, or bad ``sampling`` keys.
    """

    @classmethod
    def config_needs_codes(cls, params: dict) -> bool:
        return params.get("objective", "regression") == "autoregressive"

    def __init__(self, spec: LatentSpec, num_frames: int, *, objective: str = "regression", ordering: str = "frame",
                 context_frames: int = 10, d_model: int = 128, num_layers: int = 4, num_heads: int = 4,
                 mlp_ratio: float = 4.0, dropout: float = 0.0, patch_size: int = 2, position: str = "rope",
                 loss: str = "mse", query_chunk: int = 1024,
                 sampling: Mapping[str, Any] | None = None, target: str = "absolute", attention: str = "full",
                 spatial_kernel: int = 0, temporal_kernel: int = 1, conv_factorization: str = "joint",
                 pixel_loss_weight: float = 0.0, pixel_loss_frames: int = 2):
        super().__init__()
        check_pixel_loss(pixel_loss_weight, pixel_loss_frames, objective == "regression")
        patch = 1 if objective == "autoregressive" and ordering == "token" else patch_size
        _check_config(spec, num_frames, objective, ordering, context_frames, d_model, num_layers, num_heads,
                      mlp_ratio, dropout, patch, position, loss, query_chunk, target, attention, spatial_kernel,
                      temporal_kernel, conv_factorization)
        sampling_options(sampling)  # fail early on bad keys
        self.sampling: dict[str, Any] = dict(sampling) if sampling is not None else {}
        self.needs_codes = objective == "autoregressive"
        self.spec, self.num_frames, self.objective, self.ordering = spec, num_frames, objective, ordering
        self.context_frames, self.future_frames = context_frames, num_frames - context_frames
        self.grid, self.tokens_per_frame, self.patch_size = tuple(spec.grid), spec.tokens_per_frame, patch
        self.model_grid = (spec.grid[0] // patch, spec.grid[1] // patch)
        self.frame_tokens = self.model_grid[0] * self.model_grid[1]  # M
        self.position, self.loss, self.target = position, loss, target
        self.pixel_loss = DecodedPixelLoss(pixel_loss_weight, pixel_loss_frames)

        if self.needs_codes:
            self.num_codes = spec.codebook_size
            mask = "block" if ordering == "frame" else "causal"
            # frame: one table per position inside a patch; token: one table plus the start token (index K).
            self.code_embed = nn.Embedding(self.num_codes * patch * patch + (ordering == "token"), d_model)
            self.to_out = nn.Linear(d_model, patch * patch * self.num_codes)
        else:
            mask = "none"
            self.to_tokens = nn.Linear(patch * patch * spec.latent_dim, d_model)
            self.future_query = nn.Parameter(torch.zeros(d_model))
            self.to_out = nn.Linear(d_model, patch * patch * spec.latent_dim)
            self.standardizer = LatentStandardizer(spec.latent_dim)
        if attention == "factorized":
            self.blocks = CheckpointableBlocks(
                FactorizedBlock(d_model, num_heads, mlp_ratio, dropout, grid=self.model_grid, position=position)
                for _ in range(num_layers))
        else:
            self.blocks = CheckpointableBlocks(
                Block(d_model, num_heads, mlp_ratio, dropout, position=position, mask=mask, grid=self.model_grid,
                      query_chunk=query_chunk) for _ in range(num_layers))
        joint = temporal_kernel > 1 and conv_factorization == "joint"
        self.spatial_mixers = nn.ModuleList(
            channels_last_weight(
                nn.Conv3d(d_model, d_model, (temporal_kernel, spatial_kernel, spatial_kernel),
                          padding=(temporal_kernel // 2, spatial_kernel // 2, spatial_kernel // 2), groups=d_model)
                if joint else
                nn.Conv2d(d_model, d_model, spatial_kernel, padding=spatial_kernel // 2, groups=d_model))
            for _ in range(num_layers if spatial_kernel else 0))
        self.temporal_mixers = nn.ModuleList(  # the (2+1)D factorization's temporal half
            TemporalDepthwiseConv(d_model, temporal_kernel)
            for _ in range(num_layers if spatial_kernel and temporal_kernel > 1 and not joint else 0))
        self.norm_out = nn.LayerNorm(d_model)
        self._init_weights(num_layers)

    def _init_weights(self, num_layers: int) -> None:
        """GPT-2 style blocks, unit-scale inputs, zero output layer.

        Block linears ``N(0, 0.02)`` with zero biases, residual projections (``out_proj``, ``fc2``)
        scaled by ``1 / sqrt(2 L)``. Input tokens start at unit scale like the sin-cos table added to
        them: code embeddings ``N(0, 1/p**2)`` summed over a patch's ``p**2`` codes, the latent
        projection ``N(0, 1/fan_in)`` on standardized latents, the future query ``N(0, 1)``. The
        zero output layer starts the prior at uniform logits and the regression at the latent mean.
        """
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        for name, p in self.blocks.named_parameters():
            if name.endswith(("out_proj.weight", "fc2.weight")):
                with torch.no_grad():
                    p.mul_(1 / math.sqrt(2 * num_layers))
        if self.needs_codes:
            nn.init.normal_(self.code_embed.weight, std=1 / self.patch_size)
        else:
            nn.init.normal_(self.to_tokens.weight, std=self.to_tokens.in_features ** -0.5)
            nn.init.zeros_(self.to_tokens.bias)
            nn.init.normal_(self.future_query)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)
        for conv in (*self.spatial_mixers, *self.temporal_mixers):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    # -- input checks -------------------------------------------------------------------------

    def _check_codes(self, codes: Tensor | None, name: str, min_frames: int) -> Tensor:
        return check_codes(codes, f"transformer head: {name}.codes", self.tokens_per_frame, self.num_codes, min_frames)

    def _check_latents(self, latents: Tensor, name: str, frames: int | None) -> Tensor:
        """``latents`` must be float ``(B, T, N, D)`` with ``T == frames`` (or ``T >= 1`` when ``None``)."""
        n, d = self.tokens_per_frame, self.spec.latent_dim
        ok_frames = latents.ndim == 4 and (latents.shape[1] == frames if frames is not None else latents.shape[1] >= 1)
        if not (ok_frames and latents.is_floating_point() and latents.shape[2:] == (n, d)):
            expected = f"T={frames}" if frames is not None else "T >= 1"
            raise ValueError(f"transformer head: {name}.latents must be float (B, {expected}, N={n}, D={d}); "
                             f"got dtype={latents.dtype}, shape={tuple(latents.shape)}")
        return latents

    def _require_codes(self, method: str) -> None:
        if not self.needs_codes:
            raise ValueError(f"TransformerHead.{method} needs objective=autoregressive; "
                             f"this head is '{self.objective}'")

    # -- shared trunk -------------------------------------------------------------------------

    def _with_positions(self, x: Tensor, start: int) -> Tensor:
        """Tokens ``x`` ``(B, L, d)`` at indices ``start ..``: plus the sin-cos table when ``position="sincos"``."""
        if self.position != "sincos":
            return x
        table = sincos_3d(grid_coords(start, x.shape[1], self.model_grid, x.device), x.shape[-1])
        return x + table.to(x.dtype)

    def _layer(self, i: int, x: Tensor, cache: KVCache | None) -> Tensor:
        """Layer ``i``: the token convs (when ``spatial_kernel > 0``), then block ``i``: ``(B, L, d)`` → ``(B, L, d)``."""
        if self.spatial_mixers:  # (B, T * M, d) as (B, T, M, d): each frame's grid, or the whole clip
            frames, mixer = x.unflatten(1, (-1, self.frame_tokens)), self.spatial_mixers[i]
            mix = conv_over_grid if isinstance(mixer, nn.Conv2d) else conv_over_clip
            x = x + mix(mixer, frames, self.model_grid).flatten(1, 2)
            if self.temporal_mixers:
                x = x + self.temporal_mixers[i](x.unflatten(1, (-1, self.frame_tokens))).flatten(1, 2)
        return self.blocks[i](x, cache)

    def _trunk(self, x: Tensor, caches: list[KVCache] | None = None) -> Tensor:
        """Positions, layers and final norm: ``(B, L, d)`` → ``(B, L, d)``.

        With ``caches`` (one per block) the tokens continue the cached sequence and are appended to it.
        Each layer is checkpointed when ``self.blocks.gradient_checkpointing`` is on, in training
        without caches (:mod:`~futurelat.models.heads.checkpointing`).
        """
        x = self._with_positions(x, caches[0].length if caches else 0)
        for i in range(len(self.blocks)):
            x = self.blocks.run(self._layer, i, x, caches[i] if caches else None, enabled=caches is None)
        return self.norm_out(x)

    # -- regression ---------------------------------------------------------------------------

    def standardize(self, latents: Tensor) -> Tensor:
        """Latents ``(..., D)`` → standardized float32 ``(..., D)`` (see :class:`LatentStandardizer`)."""
        return self.standardizer(latents.float())

    def unstandardize(self, x: Tensor) -> Tensor:
        """Inverse of :meth:`standardize`: ``(..., D)`` → latents float32 ``(..., D)``."""
        return self.standardizer.inverse(x.float())

    def predict(self, context: Tensor) -> Tensor:
        """Standardized context ``(B, Tc', N, D)`` → standardized ``(B, Tf, N, D)``, the next ``Tf`` frames.

        One forward pass: ``Tc' * M`` context tokens then ``Tf * M`` query tokens at frames
        ``Tc' .. Tc' + Tf - 1``, bidirectional attention; ``Tc'`` may differ from ``context_frames``.
        With ``target="residual"`` the outputs are added to the last context frame.
        """
        bsz, frames = context.shape[:2]
        m, p = self.frame_tokens, self.patch_size
        tokens = self.to_tokens(patchify(context, self.grid, p))  # (B, Tc', M, d)
        queries = self.future_query.expand(bsz, self.future_frames, m, -1)  # (B, Tf, M, d)
        x = self._trunk(torch.cat([tokens, queries], dim=1).flatten(1, 2))  # (B, (Tc' + Tf) * M, d)
        out = unpatchify(self.to_out(x[:, frames * m:]).view(bsz, self.future_frames, m, -1), self.grid, p)
        return out + context[:, -1:] if self.target == "residual" else out  # (B, Tf, N, D)

    def _regression_loss(self, z: Latents) -> dict[str, Tensor]:
        latents = self._check_latents(z.latents, "z", self.num_frames)
        self.standardizer.fit_once(latents)
        x = self.standardize(latents)
        pred = self.predict(x[:, :self.context_frames]).float()
        target = x[:, self.context_frames:]
        loss = LOSSES[self.loss](pred, target)
        extra: dict[str, Tensor] = {}
        loss = self.pixel_loss.add_to(loss, extra, pred, latents[:, self.context_frames:], self.unstandardize)
        with torch.no_grad():
            cosine = F.cosine_similarity(self.unstandardize(pred), latents[:, self.context_frames:].float(), dim=-1)
            return {"loss": loss, "l1": F.l1_loss(pred, target), "mse": F.mse_loss(pred, target),
                    "cosine": cosine.mean(), **extra}

    def _rollout_latents(self, context: Latents, num_future: int) -> Latents:
        latents = self._check_latents(context.latents, "context", None)
        x = self.standardize(latents)[:, -self.context_frames:]
        future = []
        for _ in range(math.ceil(num_future / self.future_frames)):
            pred = self.predict(x).float()  # (B, Tf, N, D)
            future.append(pred)
            x = torch.cat([x, pred], dim=1)[:, -self.context_frames:]
        out = self.unstandardize(torch.cat(future, dim=1)[:, :num_future])
        return Latents(latents=out.to(latents.dtype), codes=None)

    # -- autoregressive: embeddings and logits ------------------------------------------------

    def _embed_frames(self, codes: Tensor) -> Tensor:
        """Frame-ordering inputs: codes ``(B, T, N)`` → tokens ``(B, T * M, d)``.

        A patch's token is the sum of one learned vector per (position in patch, code).
        """
        p = self.patch_size
        patches = patchify(codes[..., None], self.grid, p)  # (B, T, M, p*p)
        patches = patches + self.num_codes * torch.arange(p * p, device=codes.device)
        return self.code_embed(patches).sum(-2).flatten(1, 2)

    def _frame_logits(self, x: Tensor) -> Tensor:
        """Frame-ordering outputs ``(B, T * M, d)`` → logits ``(B, T, N, K)`` in raster order."""
        out = self.to_out(x).view(x.shape[0], -1, self.frame_tokens, self.to_out.out_features)
        return unpatchify(out, self.grid, self.patch_size)

    def _token_inputs(self, codes: Tensor) -> Tensor:
        """Token-ordering inputs: the start token (index ``K``) then ``codes`` ``(B, T, N)`` flat → ``(B, 1 + T*N)``.

        Input ``i`` holds token ``i - 1`` and sits at the position of token ``i``, the one it predicts.
        """
        start = codes.new_full((codes.shape[0], 1), self.num_codes)
        return torch.cat([start, codes.flatten(1)], dim=1)

    def logits(self, codes: Tensor) -> Tensor:
        """Teacher-forced logits for a clip ``codes`` ``(B, T, N)`` → ``(B, T', N, K)``, in parallel.

        ``"frame"``: ``T' = T - 1``, row ``t`` predicts frame ``t + 1`` from frames ``<= t``.
        ``"token"``: ``T' = T``, entry ``(t, j)`` predicts code ``j`` of frame ``t`` from all
        codes before it in raster order. The targets are ``codes[:, T - T':]``.

        Raises:
            ValueError: the objective is not autoregressive.
        """
        self._require_codes("logits")
        if self.ordering == "frame":
            return self._frame_logits(self._trunk(self._embed_frames(codes[:, :-1])))
        x = self._trunk(self.code_embed(self._token_inputs(codes)[:, :-1]))  # (B, T*N, d)
        return self.to_out(x).view(*codes.shape, self.num_codes)

    def _ar_loss(self, z: Latents) -> dict[str, Tensor]:
        codes = self._check_codes(z.codes, "z", 2 if self.ordering == "frame" else 1)
        logits = self.logits(codes)
        return code_cross_entropy(logits, codes[:, codes.shape[1] - logits.shape[1]:])

    # -- autoregressive: KV-cache inference ---------------------------------------------------

    def prefill(self, context: Tensor) -> tuple[Tensor, list[KVCache]]:
        """Run the context codes ``(B, Tc, N)`` once, in parallel → (next logits, KV caches).

        ``"frame"`` (``Tc >= 1``): logits ``(B, N, K)`` of frame ``Tc``. ``"token"`` (``Tc >= 0``):
        logits ``(B, 1, K)`` of the first code of frame ``Tc``. Feed the drawn codes to :meth:`step`.

        Raises:
            ValueError: the objective is not autoregressive.
        """
        self._require_codes("prefill")
        caches = [KVCache() for _ in self.blocks]
        if self.ordering == "frame":
            x = self._trunk(self._embed_frames(context), caches)
            return self._frame_logits(x[:, -self.frame_tokens:])[:, 0], caches
        x = self._trunk(self.code_embed(self._token_inputs(context)), caches)
        return self.to_out(x[:, -1:]), caches

    def step(self, codes: Tensor, caches: list[KVCache]) -> tuple[Tensor, list[KVCache]]:
        """Feed the codes just drawn; the caches grow in place (and are returned).

        ``"frame"``: ``codes`` ``(B, N)`` (one frame) → logits ``(B, N, K)`` of the next frame.
        ``"token"``: ``codes`` ``(B, 1)`` → logits ``(B, 1, K)`` of the next code. Cost: the new
        ``M`` (or 1) tokens against the cached keys; the prefix is never re-run.
        """
        self._require_codes("step")
        if self.ordering == "frame":
            return self._frame_logits(self._trunk(self._embed_frames(codes[:, None]), caches))[:, 0], caches
        return self.to_out(self._trunk(self.code_embed(codes), caches)), caches

    def _rollout_codes(self, context: Latents, num_future: int, generator: torch.Generator | None) -> Latents:
        codes = self._check_codes(context.codes, "context", 1 if self.ordering == "frame" else 0)
        options = sampling_options(self.sampling)
        bsz, n = codes.shape[0], self.tokens_per_frame
        steps = num_future if self.ordering == "frame" else num_future * n
        logits, caches = self.prefill(codes)
        drawn = []
        for i in range(steps):
            drawn.append(sample_codes(logits, **options, generator=generator))  # (B, N) or (B, 1)
            if i + 1 < steps:
                logits, caches = self.step(drawn[-1], caches)
        future = torch.cat(drawn, dim=1).view(bsz, num_future, n)
        empty = torch.empty(bsz, num_future, n, 0, device=codes.device, dtype=self.to_out.weight.dtype)
        return Latents(latents=empty, codes=future)

    # -- the Head API -------------------------------------------------------------------------

    def forward(self, z: Latents) -> dict[str, Tensor]:
        """Training losses on a clip of ``num_frames`` latent frames.

        ``"regression"``: ``z.latents`` ``(B, num_frames, N, D)``; predicts frames ``Tc ..`` from the
        first ``Tc`` and returns ``loss`` (the configured loss on standardized latents), ``l1`` and
        ``mse`` (standardized units, >= 0) and ``cosine`` (mean cosine similarity in [-1, 1] of
        predicted and true latent vectors, un-standardized); with ``pixel_loss_weight > 0`` also
        ``pixel_mse`` (per pixel, frames in [0, 1]), whose weighted value is added to ``loss``. The first batch in training mode sets
        the per-channel standardization (:class:`~futurelat.models.heads.latent_io.LatentStandardizer`,
        buffers ``standardizer.*`` in the ``state_dict``).
        ``"autoregressive"``: ``z.codes`` ``(B, T, N)``, teacher-forced next-code cross-entropy;
        returns ``loss`` (nats per code), ``accuracy`` (argmax = target, in [0, 1]) and
        ``bits_per_token`` (loss / ln 2). All values are scalars.

        Raises:
            ValueError: missing or mis-shaped latents/codes, or codes outside ``[0, K)``.
        """
        return self._ar_loss(z) if self.needs_codes else self._regression_loss(z)

    @torch.no_grad()
    def rollout(self, context: Latents, num_future: int, *, generator: torch.Generator | None = None) -> Latents:
        """Predict ``num_future`` latent frames after ``context``; eval mode, restores the previous mode.

        ``"regression"``: from ``context.latents`` ``(B, Tc', N, D)`` (the last ``context_frames``
        are used) → :class:`Latents` with ``latents`` ``(B, num_future, N, D)`` and ``codes=None``.
        Deterministic (``generator`` is unused). Beyond the trained ``Tf`` frames it rolls out in
        blocks of ``Tf``: predictions are appended to the context and the last ``context_frames``
        frames predict the next block. A discrete backbone snaps the vectors to its codebook on decode.
        ``"autoregressive"``: samples codes after ``context.codes`` ``(B, Tc, N)`` per
        ``self.sampling`` (``generator`` makes draws reproducible), one KV-cache step per frame
        ("frame") or code ("token") → ``codes`` ``(B, num_future, N)`` int64 in ``[0, K)`` and
        ``latents`` an empty ``(B, num_future, N, 0)`` float tensor (the backbone decodes the codes).

        Raises:
            ValueError: ``num_future < 1``, missing/mis-shaped context, or bad ``self.sampling``.
        """
        if num_future < 1:
            raise ValueError(f"transformer head: num_future must be >= 1; got {num_future}")
        was_training = self.training
        self.eval()
        try:
            if self.needs_codes:
                return self._rollout_codes(context, num_future, generator)
            return self._rollout_latents(context, num_future)
        finally:
            self.train(was_training)
