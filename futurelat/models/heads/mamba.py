"""``mamba`` head: Mamba-2 blocks that predict the next latent frame, as codes or as vectors.

Shape notation: ``B`` batch, ``T`` latent frames, ``N = h * w`` tokens per frame, ``K`` codebook
size, ``D`` latent channels, ``d`` model width; codes are ``(B, T, N)`` int64 in ``[0, K)``.

Two objectives (``head.objective``):

- ``"autoregressive"``: a prior over a discrete backbone's codes, next-frame/next-token
  cross-entropy, sampled (the VQ-VAE + Mamba token prior).
- ``"regression"``: continuous latents ``(B, T, N, D)`` in, the next frame's latents out, L1 loss
  by default (the encoder-Mamba-decoder frame predictor); works on any backbone. Latents are
  standardized per channel (:class:`~futurelat.models.heads.latent_io.LatentStandardizer`); in
  rollouts each prediction is fed back as the next input. On a discrete backbone the predicted
  vectors are snapped to the nearest codebook vectors by the backbone's ``decode``. Frame
  ordering only.

Two orderings (``head.ordering``):

- ``"frame"``: the scan runs over time. Every block mixes each grid position's history with a
  Mamba-2 mixer over ``T`` (sequences ``(B * N, T, d)``), then mixes space inside each frame with a
  depthwise ``spatial_kernel x spatial_kernel`` conv over the ``(h, w)`` grid followed by an MLP
  (a ConvNeXt block, Liu et al. 2022). The output at frame ``t`` is the logits of all ``N`` codes
  of frame ``t + 1``; sampling draws them independently, one frame per recurrent step. With
  ``patch_size = p`` each grid position holds a ``p x p`` patch of codes (``N / p**2`` positions,
  ``p**2 * K`` logits each), which makes the blocks ``p**2`` times cheaper.
- ``"token"``: the codes of all frames are one raster-order sequence (frame, row, column) of length
  ``T * N`` led by a start token; each input token gets a learned (row, column) embedding of the
  position it predicts (no time embedding, so the length is not capped). Mamba-2 + MLP blocks,
  next-token cross-entropy; sampling is token by token.

Rollouts process the context once with the parallel (chunked) scan, keep each layer's recurrent
state (conv window + SSM state) and then step at constant cost per frame/token, never re-running
the prefix. Mamba: Gu & Dao 2023 (arXiv:2312.00752); Mamba-2 / SSD: Dao & Gu 2024
(arXiv:2405.21060); the mixer and its backends are in :mod:`futurelat.models.heads.mamba_layers`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from futurelat.models.base import Head, LatentSpec, Latents, check_codes
from futurelat.models.heads.attention import MLP, channels_last_weight, conv_over_grid
from futurelat.models.heads.checkpointing import CheckpointableBlocks
from futurelat.models.heads.latent_io import LatentStandardizer, check_patch_size, patchify, unpatchify
from futurelat.models.heads.mamba_layers import Mamba2Mixer, MixerState, resolve_backend
from futurelat.models.heads.pixel_loss import DecodedPixelLoss, check_pixel_loss
from futurelat.models.heads.sampling import code_cross_entropy, sample_codes, sampling_options

ORDERINGS = ("frame", "token")
OBJECTIVES = ("autoregressive", "regression")
#: Regression losses in (standardized) latent space.
LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss, "smooth_l1": F.smooth_l1_loss}


# ---------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------


class FrameBlock(nn.Module):
    """Temporal Mamba-2 per grid position, then spatial ConvNeXt-style mixing inside each frame.

    ``x`` ``(B, T, N, d)`` → ``(B, T, N, d)``, causal in ``T``; pre-norm residual branches.
    """

    def __init__(self, dim: int, grid: tuple[int, int], mixer: dict[str, Any], spatial_kernel: int,
                 mlp_ratio: float, dropout: float):
        super().__init__()
        self.grid = grid
        self.norm1 = nn.LayerNorm(dim)
        self.temporal = Mamba2Mixer(dim, **mixer)
        self.spatial = channels_last_weight(
            nn.Conv2d(dim, dim, spatial_kernel, padding=spatial_kernel // 2, groups=dim))
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_ratio, dropout)
        self.drop = nn.Dropout(dropout)

    def _space(self, x: Tensor) -> Tensor:
        """``(..., N, d)`` → the MLP branch ``mlp(norm(dwconv(x)))`` ``(..., N, d)``."""
        return self.drop(self.mlp(self.norm2(conv_over_grid(self.spatial, x, self.grid))))

    def forward(self, x: Tensor, state: MixerState | None = None) -> tuple[Tensor, MixerState]:
        bsz, frames, n, d = x.shape
        y = self.norm1(x).transpose(1, 2).reshape(bsz * n, frames, d)  # one sequence per position
        y, state = self.temporal(y, state)
        x = x + self.drop(y.view(bsz, n, frames, d).transpose(1, 2))
        return x + self._space(x), state

    def step(self, x: Tensor, state: MixerState) -> tuple[Tensor, MixerState]:
        """One frame ``(B, N, d)`` → ``(B, N, d)`` and the new state."""
        bsz, n, d = x.shape
        y, state = self.temporal.step(self.norm1(x).reshape(bsz * n, d), state)
        x = x + self.drop(y.view(bsz, n, d))
        return x + self._space(x), state


class TokenBlock(nn.Module):
    """Mamba-2 mixer then MLP over one long token sequence: ``(B, L, d)`` → ``(B, L, d)``, causal."""

    def __init__(self, dim: int, mixer: dict[str, Any], mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mixer = Mamba2Mixer(dim, **mixer)
        self.mlp = MLP(dim, mlp_ratio, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, state: MixerState | None = None) -> tuple[Tensor, MixerState]:
        y, state = self.mixer(self.norm1(x), state)
        x = x + self.drop(y)
        return x + self.drop(self.mlp(self.norm2(x))), state

    def step(self, x: Tensor, state: MixerState) -> tuple[Tensor, MixerState]:
        """One token ``(B, d)`` → ``(B, d)`` and the new state."""
        y, state = self.mixer.step(self.norm1(x), state)
        x = x + self.drop(y)
        return x + self.drop(self.mlp(self.norm2(x))), state


# ---------------------------------------------------------------------------------------------
# The head
# ---------------------------------------------------------------------------------------------


class MambaHead(Head):
    """Mamba-2 next-frame predictor over codes ``(B, T, N)`` or latents ``(B, T, N, D)``; see the module docstring.

    Args:
        spec: the backbone's :class:`LatentSpec`; the autoregressive objective needs
            ``codebook_size`` (``K``); both need ``grid``.
        num_frames: latent frames per training clip (context + future); only recorded, since
            nothing in the model depends on the clip length.
        objective: ``"autoregressive"`` (codes, cross-entropy) or ``"regression"`` (latents).
        loss: regression only: ``"l1" | "mse" | "smooth_l1"`` on standardized latents.
        ordering: ``"frame"`` or ``"token"`` (the regression objective needs ``"frame"``).
        d_model: ``d``. num_layers: blocks. d_state, expand, head_dim, conv_kernel, chunk_size:
            the Mamba-2 mixer's (see :class:`Mamba2Mixer`).
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
        pixel_loss_weight, pixel_loss_frames: regression only: the decoded pixel loss
            (:mod:`~futurelat.models.heads.pixel_loss`), off at ``0``; as for the transformer head.
        sampling: ``{"greedy", "temperature", "top_k"}`` for :meth:`rollout`, kept in
            ``self.sampling`` (see :func:`~futurelat.models.heads.sampling.sample_codes`).

    Raises:
        ValueError: the autoregressive objective on a continuous ``spec`` (``codebook_size is
            None``), an unknown objective/loss/ordering, regression with the token ordering, an even
            ``spatial_kernel``, or bad mixer sizes / sampling keys; the message names the key.
        ImportError: ``backend="mamba_ssm"`` without the ``mamba-ssm`` package.
    """

    @classmethod
    def config_needs_codes(cls, params: dict) -> bool:
        return params.get("objective", "autoregressive") == "autoregressive"

    def __init__(self, spec: LatentSpec, num_frames: int, *, objective: str = "autoregressive", loss: str = "l1",
                 ordering: str = "frame", d_model: int = 128,
                 num_layers: int = 4, d_state: int = 32, expand: int = 2, head_dim: int = 32,
                 conv_kernel: int = 4, spatial_kernel: int = 3, patch_size: int = 2, mlp_ratio: float = 2.0,
                 tie_embeddings: bool = True, chunk_size: int = 64, dropout: float = 0.0, input_noise: float = 0.0, backend: str = "auto",
                 sampling: Mapping[str, Any] | None = None, pixel_loss_weight: float = 0.0,
                 pixel_loss_frames: int = 2):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"head.params.objective must be one of {OBJECTIVES}; got {objective!r}")
        regression = objective == "regression"
        check_pixel_loss(pixel_loss_weight, pixel_loss_frames, regression)
        self.pixel_loss = DecodedPixelLoss(pixel_loss_weight, pixel_loss_frames)
        if not regression and spec.codebook_size is None:
            raise ValueError("the mamba head's autoregressive objective predicts codes and needs a discrete backbone: "
                             f"spec.codebook_size is None for {spec}; use a backbone with a codebook (e.g. vqvae) "
                             "or head.params.objective=regression")
        if loss not in LOSSES:
            raise ValueError(f"head.params.loss must be one of {tuple(LOSSES)}; got {loss!r}")
        if ordering not in ORDERINGS:
            raise ValueError(f"head.ordering must be one of {ORDERINGS}; got {ordering!r}")
        if regression and ordering != "frame":
            raise ValueError(f"head.params.objective=regression needs head.params.ordering=frame; got {ordering!r}")
        if spatial_kernel < 1 or spatial_kernel % 2 == 0:
            raise ValueError(f"head.spatial_kernel must be a positive odd number; got {spatial_kernel}")
        patch = patch_size if ordering == "frame" else 1
        check_patch_size(patch, spec.grid, "head.patch_size")
        if not (0.0 <= input_noise < 1.0 or (regression and input_noise >= 0)):
            raise ValueError(f"head.input_noise must lie in [0, 1) (regression: >= 0); got {input_noise}")
        self.spec, self.num_frames, self.ordering = spec, num_frames, ordering
        self.objective, self.needs_codes, self.loss_name = objective, not regression, loss
        self.input_noise = input_noise
        self.num_codes, self.grid, self.tokens_per_frame = spec.codebook_size, tuple(spec.grid), spec.tokens_per_frame
        sampling_options(sampling)  # fail early on bad keys
        self.sampling: dict[str, Any] = dict(sampling) if sampling is not None else {}
        mixer = dict(d_state=d_state, expand=expand, head_dim=head_dim, conv_kernel=conv_kernel,
                     chunk_size=chunk_size, backend=backend)

        self.patch_size = patch
        h, w = self.model_grid = (spec.grid[0] // patch, spec.grid[1] // patch)
        self.row_embed = nn.Parameter(torch.zeros(h, d_model))
        self.col_embed = nn.Parameter(torch.zeros(w, d_model))
        if ordering == "frame":
            self.blocks = CheckpointableBlocks(
                FrameBlock(d_model, self.model_grid, mixer, spatial_kernel, mlp_ratio, dropout) for _ in range(num_layers))
        else:
            self.blocks = CheckpointableBlocks(TokenBlock(d_model, mixer, mlp_ratio, dropout) for _ in range(num_layers))
        self.norm_out = nn.LayerNorm(d_model)
        if regression:
            self.standardizer = LatentStandardizer(spec.latent_dim)
            self.latent_in = nn.Linear(patch * patch * spec.latent_dim, d_model)
            self.latent_out = nn.Linear(d_model, patch * patch * spec.latent_dim)
        else:
            # Frame ordering: one embedding table per position inside a patch (summed over the
            # patch's p*p codes); token ordering: one table plus the start token (index K).
            self.code_embed = nn.Embedding(self.num_codes * patch * patch + (ordering == "token"), d_model)
            # Tied input/output code embeddings (Press & Wolf 2017): a fresh model starts near
            # "copy the previous frame / code", a strong prior for video.
            num_out = self.num_codes * patch * patch
            self.to_logits = None if tie_embeddings else nn.Linear(d_model, num_out, bias=False)
            self.logit_bias = nn.Parameter(torch.zeros(num_out))
        self.backend = resolve_backend(backend)
        self._init_weights(num_layers)

    def _init_weights(self, num_layers: int) -> None:
        """GPT-2-style: N(0, 0.02) embeddings and linears, residual outputs scaled by 1/sqrt(2 L)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
        for p in (self.row_embed, self.col_embed):
            nn.init.normal_(p, std=0.02)
        for name, p in self.named_parameters():
            if name.endswith(("out_proj.weight", "fc2.weight")):
                with torch.no_grad():
                    p.mul_(1 / math.sqrt(2 * num_layers))

    # -- input checks -------------------------------------------------------------------------

    def _check_codes(self, codes: Tensor | None, name: str, min_frames: int) -> Tensor:
        return check_codes(codes, f"mamba head: {name}.codes", self.tokens_per_frame, self.num_codes, min_frames)

    # -- embeddings and logits ----------------------------------------------------------------

    def _pos(self) -> Tensor:
        """``(M, d)`` learned (row, column) embedding of the model grid's positions, raster order."""
        return (self.row_embed[:, None] + self.col_embed[None]).flatten(0, 1)

    def _logits(self, x: Tensor) -> Tensor:
        """``(..., d)`` → ``(..., patch_size**2 * K)`` logits."""
        num_out = self.logit_bias.shape[0]
        weight = self.code_embed.weight[:num_out] if self.to_logits is None else self.to_logits.weight
        return F.linear(self.norm_out(x), weight, self.logit_bias)

    def _embed_frames(self, codes: Tensor) -> Tensor:
        """Frame-ordering inputs: codes ``(..., N)`` → ``(..., M, d)``, ``M = N / patch_size**2``.

        A patch's embedding is the sum of one learned vector per (position in patch, code).
        """
        p = self.patch_size
        patches = patchify(codes[..., None], self.grid, p)  # (..., M, p*p)
        patches = patches + self.num_codes * torch.arange(p * p, device=codes.device)
        return self.code_embed(patches).sum(-2) + self._pos()

    def _frame_logits(self, x: Tensor) -> Tensor:
        """Frame-ordering outputs: ``(..., M, d)`` → logits ``(..., N, K)`` in raster order."""
        return unpatchify(self._logits(x), self.grid, self.patch_size)  # (..., M, p*p*K) → (..., N, K)

    def _embed_latents(self, latents: Tensor) -> Tensor:
        """Regression inputs: standardized latents ``(..., N, D)`` → ``(..., M, d)``."""
        return self.latent_in(patchify(latents, self.grid, self.patch_size)) + self._pos()

    def _frame_latents(self, x: Tensor) -> Tensor:
        """Regression outputs: ``(..., M, d)`` → standardized latents ``(..., N, D)``."""
        return unpatchify(self.latent_out(self.norm_out(x)), self.grid, self.patch_size)

    def _embed_frame(self, frames: Tensor) -> Tensor:
        """Frame-ordering inputs, codes ``(..., N)`` or standardized latents ``(..., N, D)`` → ``(..., M, d)``."""
        return self._embed_latents(frames) if self.objective == "regression" else self._embed_frames(frames)

    def _frame_output(self, x: Tensor) -> Tensor:
        """Frame-ordering outputs ``(..., M, d)`` → logits ``(..., N, K)`` or latents ``(..., N, D)``."""
        return self._frame_latents(x) if self.objective == "regression" else self._frame_logits(x)

    def _embed_tokens(self, tokens: Tensor, start: int) -> Tensor:
        """Token-ordering inputs ``(B, L)`` at sequence indices ``start..start+L-1`` → ``(B, L, d)``.

        Input ``i`` holds token ``i - 1`` (index ``K`` = start token) and the position embedding
        of token ``i``, the one it predicts.
        """
        where = torch.arange(start, start + tokens.shape[1], device=tokens.device) % self.tokens_per_frame
        return self.code_embed(tokens) + self._pos()[where]

    def logits(self, codes: Tensor) -> Tensor:
        """Teacher-forced logits for a clip ``codes`` ``(B, T, N)`` → ``(B, T', N, K)``, in parallel.

        ``"frame"``: ``T' = T - 1``, row ``t`` predicts frame ``t + 1`` from frames ``<= t``.
        ``"token"``: ``T' = T``, entry ``(t, j)`` predicts code ``j`` of frame ``t`` from all
        codes before it in raster order. The targets are ``codes[:, T - T':]``.
        """
        if self.ordering == "frame":
            x = self._embed_frame(codes[:, :-1])  # (B, T-1, M, d)
            for block in self.blocks:
                x, _ = self.blocks.run(block, x)
            return self._frame_output(x)
        bsz, frames, n = codes.shape
        start = codes.new_full((bsz, 1), self.num_codes)
        x = self._embed_tokens(torch.cat([start, codes.flatten(1)[:, :-1]], dim=1), 0)  # (B, T*N, d)
        for block in self.blocks:
            x, _ = self.blocks.run(block, x)
        return self._logits(x).view(bsz, frames, n, self.num_codes)

    # -- training -----------------------------------------------------------------------------

    def forward(self, z: Latents) -> dict[str, Tensor]:
        """Teacher-forced next-step loss on a clip.

        Autoregressive: cross-entropy on ``z.codes`` ``(B, T, N)``; returns ``loss`` (mean nats per
        code), ``accuracy`` (argmax = target, fraction in [0, 1]) and ``bits_per_token``.
        Regression: ``loss`` (``self.loss_name`` between predicted and true standardized latents
        of frames ``1..T-1``), plus ``l1``, ``mse`` (standardized units) and ``cosine`` (mean
        cosine similarity of predicted and true latent vectors, in [-1, 1]). All scalars.

        Raises:
            ValueError: missing codes, wrong shape/dtype, or codes outside ``[0, K)``;
                regression: latents not ``(B, T >= 2, N, D)``.
        """
        if self.objective == "regression":
            return self._regression_loss(z)
        codes = self._check_codes(z.codes, "z", 2 if self.ordering == "frame" else 1)
        inputs = codes
        if self.training and self.input_noise > 0:
            noisy = torch.rand(codes.shape, device=codes.device) < self.input_noise
            inputs = torch.where(noisy, torch.randint_like(codes, self.num_codes), codes)
        logits = self.logits(inputs)
        return code_cross_entropy(logits, codes[:, codes.shape[1] - logits.shape[1]:])

    def _check_latents(self, latents: Tensor, name: str, min_frames: int) -> Tensor:
        n, d = self.tokens_per_frame, self.spec.latent_dim
        if latents.ndim != 4 or latents.shape[2:] != (n, d) or latents.shape[1] < min_frames:
            raise ValueError(f"mamba head (regression): {name}.latents must be (B, T, N={n}, D={d}) with "
                             f"T >= {min_frames}; got shape {tuple(latents.shape)}")
        return latents

    def _regression_loss(self, z: Latents) -> dict[str, Tensor]:
        latents = self._check_latents(z.latents, "z", 2)
        self.standardizer.fit_once(latents)
        x = self.standardizer(latents)
        inputs = x[:, :-1]
        if self.training and self.input_noise > 0:
            inputs = inputs + self.input_noise * torch.randn_like(inputs)
        h = self._embed_latents(inputs)
        for block in self.blocks:
            h, _ = self.blocks.run(block, h)
        pred, target = self._frame_latents(h).float(), x[:, 1:].float()
        with torch.no_grad():
            stats = {"l1": F.l1_loss(pred, target), "mse": F.mse_loss(pred, target),
                     "cosine": F.cosine_similarity(pred, target, dim=-1).mean()}
        loss = self.pixel_loss.add_to(LOSSES[self.loss_name](pred, target), stats, pred, latents[:, 1:],
                                      self.standardizer.inverse)
        return {"loss": loss, **stats}

    # -- recurrent inference ------------------------------------------------------------------

    def prefill(self, context: Tensor) -> tuple[Tensor, Any]:
        """Run the context ``(B, Tc, N)`` once, in parallel → (next logits, recurrent state).

        ``"frame"`` (``Tc >= 1``): logits ``(B, N, K)`` of frame ``Tc`` (regression: ``context`` is
        standardized latents ``(B, Tc, N, D)`` and the output the prediction ``(B, N, D)``). ``"token"`` (``Tc >= 0``):
        logits ``(B, 1, K)`` of the first code of frame ``Tc``; a raster-order prefix ``(B, L)``
        (any ``L >= 0``, e.g. ending mid-frame) is accepted too and gives the logits of code ``L``.
        Feed the sampled codes to :meth:`step`.
        """
        if self.ordering == "frame":
            x = self._embed_frame(context)  # (B, Tc, M, d)
            states = []
            for block in self.blocks:
                x, state = block(x)
                states.append(state)
            return self._frame_output(x[:, -1]), states
        bsz = context.shape[0]
        start = context.new_full((bsz, 1), self.num_codes)
        tokens = torch.cat([start, context.flatten(1)], dim=1)  # (B, L + 1) with L = Tc * N
        x = self._embed_tokens(tokens, 0)
        states = []
        for block in self.blocks:
            x, state = block(x, None)
            states.append(state)
        return self._logits(x[:, -1:]), (states, tokens.shape[1])

    def step(self, codes: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Feed the codes just drawn and advance the state by one step, at constant cost.

        ``"frame"``: ``codes`` ``(B, N)`` (one frame) → logits ``(B, N, K)`` of the next frame
        (regression: standardized latents ``(B, N, D)`` → the next frame's ``(B, N, D)``).
        ``"token"``: ``codes`` ``(B, 1)`` → logits ``(B, 1, K)`` of the next code.
        """
        new_states = []
        if self.ordering == "frame":
            x = self._embed_frame(codes)  # (B, M, d)
            for block, s in zip(self.blocks, state):
                x, s = block.step(x, s)
                new_states.append(s)
            return self._frame_output(x), new_states
        states, index = state
        x = self._embed_tokens(codes, index)[:, 0]  # (B, d)
        for block, s in zip(self.blocks, states):
            x, s = block.step(x, s)
            new_states.append(s)
        return self._logits(x)[:, None], (new_states, index + 1)

    @torch.no_grad()
    def rollout(self, context: Latents, num_future: int, *, generator: torch.Generator | None = None) -> Latents:
        """Predict ``num_future`` frames after ``context``.

        Autoregressive: samples codes after ``context.codes`` ``(B, Tc, N)``, greedy or ancestral
        per ``self.sampling`` (``generator`` makes draws reproducible); the context is read once,
        then each frame ("frame") or code ("token") costs one recurrent step. Regression: reads
        ``context.latents`` ``(B, Tc, N, D)`` and feeds each predicted frame back as the next input.
        Runs in eval mode (dropout off) and restores the previous mode.

        Returns:
            :class:`Latents`. Autoregressive: ``codes`` ``(B, num_future, N)`` int64 in ``[0, K)``
            and ``latents`` an empty ``(B, num_future, N, 0)`` float tensor (the head does not own
            the codebook vectors, so the backbone decodes from ``codes``). Regression: ``latents``
            ``(B, num_future, N, D)`` in the backbone's scale and ``codes=None``.

        Raises:
            ValueError: missing/bad context codes or latents, ``num_future < 1``, bad ``self.sampling``.
        """
        if self.objective == "regression":
            return self._regress_rollout(context, num_future)
        codes = self._check_codes(context.codes, "context", 1 if self.ordering == "frame" else 0)
        if num_future < 1:
            raise ValueError(f"mamba head: num_future must be >= 1; got {num_future}")
        options = sampling_options(self.sampling)
        bsz, n = codes.shape[0], self.tokens_per_frame
        steps = num_future if self.ordering == "frame" else num_future * n
        was_training = self.training
        self.eval()
        try:
            logits, state = self.prefill(codes)
            drawn = []
            for i in range(steps):
                drawn.append(sample_codes(logits, **options, generator=generator))  # (B, N) or (B, 1)
                if i + 1 < steps:
                    logits, state = self.step(drawn[-1], state)
        finally:
            self.train(was_training)
        future = torch.cat(drawn, dim=1).view(bsz, num_future, n)
        empty = torch.empty(bsz, num_future, n, 0, device=codes.device, dtype=self.logit_bias.dtype)
        return Latents(latents=empty, codes=future)

    def _regress_rollout(self, context: Latents, num_future: int) -> Latents:
        latents = self._check_latents(context.latents, "context", 1)
        if num_future < 1:
            raise ValueError(f"mamba head: num_future must be >= 1; got {num_future}")
        was_training = self.training
        self.eval()
        try:
            pred, state = self.prefill(self.standardizer(latents))
            predicted = [pred]
            for _ in range(num_future - 1):
                pred, state = self.step(pred, state)
                predicted.append(pred)
        finally:
            self.train(was_training)
        return Latents(latents=self.standardizer.inverse(torch.stack(predicted, dim=1)), codes=None)
