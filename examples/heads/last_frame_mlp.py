"""How to add a head in one file: ``last_frame_mlp``, each next frame from the frame before it by an MLP.

Shape notation: ``B`` batch, ``T`` latent frames, ``N = h * w`` tokens per frame, ``D`` latent
channels, ``p`` patch size, ``M = N / p**2`` tokens per frame, ``d`` width; latents ``(B, T, N, D)``.

A head is a :class:`~futurelat.models.heads.composed.ComposedHead`: a *trunk* (tokens ``(B, L, d)``
→ features ``(B, L, d)``) plus an *objective* (input/output layers, loss, rollout). Here the trunk
is new and tiny, and the objective is reused:

- :class:`TokenMLPTrunk` mixes nothing across tokens: a residual MLP per token. Each output depends
  on its own frame only, so it is frame-causal (``causal = "frame"``) and needs no state to roll
  out: ``prefill`` and ``step`` are plain calls.
- :class:`~futurelat.models.heads.objectives.latent_regression.NextFrameRegression` turns it into a
  predictor: it standardizes the latents, embeds ``p x p`` patches, regresses frame ``t + 1`` from
  frame ``t`` (teacher forcing, ``loss`` on standardized latents) and rolls out by feeding each
  prediction back. So the head predicts every frame from the last one it saw.

To use it from a config, write ``configs/head/<name>.yaml`` naming the class by its path,
``name: examples.heads.last_frame_mlp:LastFrameMLPHead`` (or a name registered in
``futurelat.registry.HEADS``), with ``params: {d_model, num_layers, mlp_ratio, patch_size, loss}``
(every keyword argument below, no more); README.md, "Add a head".
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from futurelat.models.base import LatentSpec
from futurelat.models.heads.attention import MLP
from futurelat.models.heads.composed import ComposedHead
from futurelat.models.heads.objectives.latent_regression import LOSSES, NextFrameRegression
from futurelat.models.heads.patches import check_patch_size
from futurelat.models.heads.pixel_loss import DecodedPixelLoss


class TokenMLPTrunk(nn.Module):
    """``num_layers`` residual blocks ``x + MLP(LayerNorm(x))`` per token, then a LayerNorm:
    ``(B, L, d)`` → ``(B, L, d)``.

    Args:
        d_model: ``d``. num_layers: blocks. mlp_ratio: hidden width in multiples of ``d``.
        grid: ``(h', w')`` tokens per frame.
    """

    causal = "frame"  # frame t's features see frame t only, so they never see a later frame

    def __init__(self, *, d_model: int, num_layers: int, mlp_ratio: float, grid: tuple[int, int]):
        super().__init__()
        self.width, self.grid, self.frame_tokens = d_model, tuple(grid), grid[0] * grid[1]
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(num_layers))
        self.mlps = nn.ModuleList(MLP(d_model, mlp_ratio, 0.0) for _ in range(num_layers))
        self.norm_out = nn.LayerNorm(d_model)

    def forward(self, x: Tensor) -> Tensor:
        for norm, mlp in zip(self.norms, self.mlps):
            x = x + mlp(norm(x))
        return self.norm_out(x)

    def prefill(self, x: Tensor) -> tuple[Tensor, Any]:
        """Rollout start: ``(B, L, d)`` → features and a state (none: nothing is carried over)."""
        return self(x), None

    def step(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One more frame ``(B, M, d)`` → its features ``(B, M, d)``."""
        return self(x), state


class LastFrameMLPHead(ComposedHead):
    """Predicts latent frame ``t + 1`` from frame ``t`` with a per-token MLP; see the module docstring.

    Args:
        spec: the backbone's :class:`LatentSpec` (any backbone: it reads ``latents``).
        num_frames: latent frames per training clip (recorded; the head does not depend on it).
        d_model: ``d``. num_layers: MLP blocks (>= 1). mlp_ratio: the MLP's hidden width in multiples
            of ``d`` (> 0).
        patch_size: ``p``, divides the grid. loss: ``"l1" | "mse" | "smooth_l1"`` on standardized latents.

    ``forward(z)`` returns ``loss``, ``l1``, ``mse``, ``cosine``; ``rollout(context, n)`` returns
    latents ``(B, n, N, D)``.

    Raises:
        ValueError: a bad setting; the message names ``head.params.<key>``.
    """

    name = "last_frame_mlp"

    def __init__(self, spec: LatentSpec, num_frames: int, *, d_model: int, num_layers: int, mlp_ratio: float,
                 patch_size: int, loss: str):
        super().__init__()
        check_patch_size(patch_size, spec.grid)
        if loss not in LOSSES or not mlp_ratio > 0 or d_model < 1 or num_layers < 1:
            raise ValueError(f"head.params.loss must be one of {tuple(LOSSES)}, head.params.mlp_ratio > 0, "
                             f"head.params.d_model >= 1 and head.params.num_layers >= 1; got {loss!r}, "
                             f"{mlp_ratio!r}, {d_model!r}, {num_layers!r}")
        self.spec, self.num_frames = spec, num_frames
        self.pixel_loss = DecodedPixelLoss(0.0, 1)  # off; the builder reads it
        self.trunk = TokenMLPTrunk(d_model=d_model, num_layers=num_layers, mlp_ratio=mlp_ratio,
                                   grid=(spec.grid[0] // patch_size, spec.grid[1] // patch_size))
        self.objective = NextFrameRegression(spec, patch_size=patch_size, width=d_model, loss=loss, input_noise=0.0,
                                             pixel_loss=self.pixel_loss, name=self.name)
        self.objective.check_trunk(self.trunk)
