"""``code_prior``: a prior over a discrete backbone's codes, next-code cross-entropy, sampled.

Shape notation: ``B`` batch, ``T`` latent frames, ``N = h * w`` codes per frame, ``K`` codebook
size, ``p`` patch side, ``M = N / p**2`` tokens per frame, ``d`` trunk width; codes ``(B, T, N)``
int64 in ``[0, K)``.

Two orderings (``head.params.ordering``), each on a trunk of the matching causality:

- ``"frame"`` (a trunk with ``causal == "frame"``): a token holds the codes of a ``p x p`` patch
  (the sum of one learned embedding per (position in patch, code)), sees its own frame and every
  earlier one, and predicts the ``p*p*K`` logits of the same patch in the next frame: all codes of
  frame ``t + 1`` from frames ``<= t`` at once. Rollouts step one frame at a time.
- ``"token"`` (``causal == "token"``): VideoGPT's raster order (Yan et al. 2021, arXiv:2104.10157):
  frame, row, column, led by a start token (index ``K``), one code per step.

Whole-frame decoding (``frame_decoding="maskgit"``, frame ordering): masked token modelling of the next frame
(MaskGIT, Chang et al. 2022, arXiv:2202.04200; MaskViT, Gupta et al. 2022, arXiv:2206.11894). The token of
frame ``t`` also holds the visible codes of frame ``t + 1`` (index ``K``: masked); training masks a cosine share
and scores the masked codes; a rollout fills each frame in ``sampling.steps`` passes against the trunk's state
(``trunk.peek``), ``steps + 1`` one-frame passes a frame (:mod:`~futurelat.models.heads.objectives.maskgit`).

Training may corrupt a fraction ``input_noise`` of the *input* codes with random ones (targets stay clean;
cf. GameNGen, Valevski et al. 2024). ``scheduled_sampling = q > 0`` (frame ordering) replaces a share ``q`` of
the input frames after the first by codes drawn from a first teacher-forced pass without gradients
(parallel scheduled sampling, Duckworth et al. 2019, arXiv:1906.04331). Rollouts draw codes greedily or by
ancestral sampling with temperature and top-k (:mod:`futurelat.models.heads.sampling`).

Unrolled training (``unroll_frames = r > 0``; frame ordering, independent decoding) feeds the last ``r`` input
frames of each clip as the prior's own mean-field predictions (soft scheduled sampling, Goyal et al. 2017,
arXiv:1704.06970, without gradient through them); the loss stays the cross-entropy against the true codes.

Mean-field rollout (``sampling.mean_field``, frame ordering, independent decoding): no code is drawn; each
future frame is the expected codebook vector ``sum_k p_k e_k`` (which the backbone snaps and decodes), and the
trunk reads the expected code embedding ``sum_k p_k E_k`` of it (soft feedback, Goyal et al. 2017): one
deterministic pass per frame. The codebook vectors come from the backbone
(:attr:`CodePrior.code_vectors`, set by :func:`~futurelat.models.latent_video_model.build_model`).
Motion copy (``motion_copy``): :mod:`~futurelat.models.heads.objectives.motion_copy`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from futurelat.models.base import Latents, LatentSpec, check_codes
from futurelat.models.heads.objectives.maskgit import cosine_mask, fill_frame
from futurelat.models.heads.objectives.motion_copy import MotionCopy, check_motion_copy
from futurelat.models.heads.objectives.patch_loss import check_static_keep, patch_order_loss
from futurelat.models.heads.patches import patchify, unpatchify
from futurelat.models.heads.sampling import (code_cross_entropy, code_probabilities, draw_options, sample_codes,
                                             sampling_options)

ORDERINGS = ("frame", "token")
#: How the codes of a future frame are drawn (frame ordering): all at once, or in MaskGIT's refinement passes.
FRAME_DECODINGS = ("independent", "maskgit")
#: How features become logits: ``"linear"`` (a linear layer with bias), ``"tied"`` (the code embedding
#: transposed, plus ``logit_bias``; Press & Wolf 2017) or ``"untied"`` (a bias-free linear plus ``logit_bias``).
READOUTS = ("linear", "tied", "untied")


class CodePrior(nn.Module):
    """Next-code cross-entropy over ``(B, T, N)`` codes on a trunk; see the module docstring.

    Args (keyword-only):
        spec: the backbone's :class:`LatentSpec`; needs ``codebook_size``.
        ordering: ``"frame"`` or ``"token"``.
        patch_size: ``p`` for the frame ordering (must divide the grid; the head checks it); the
            token ordering uses 1.
        width: ``d``, the trunk's width.
        readout: one of :data:`READOUTS`.
        input_noise: fraction in ``[0, 1)`` of input codes replaced by random codes in training.
        name: the head's name, for messages.
        frame_decoding: one of :data:`FRAME_DECODINGS` (``"maskgit"`` needs the frame ordering).
        scheduled_sampling: share in ``[0, 1]`` of input frames replaced by the prior's own draws in
            training (frame ordering, independent decoding; 0 = off).
        unroll_frames: ``r >= 0``, the last input frames of each training clip that are the prior's own
            mean-field predictions (frame ordering, independent decoding, no scheduled sampling; 0 = off).
        static_keep: share in ``(0, 1]`` of the static tokens scored in training (frame ordering,
            independent decoding, no unrolling; 1 = all): see :mod:`~futurelat.models.heads.objectives.patch_loss`.

    Attributes:
        code_vectors: codes ``(...)`` int64 → the backbone's codebook vectors ``(..., D)`` (its
            ``embed_codes``), set by :func:`~futurelat.models.latent_video_model.build_model`; only
            the mean-field rollout needs it (``None`` until set).

    Raises:
        ValueError: a spec without codes, or an unknown or incompatible option (named).

    Layers keep PyTorch's initialization; the head initializes them.
    """

    needs_codes = True
    code_vectors: Callable[[Tensor], Tensor] | None = None

    def __init__(self, spec: LatentSpec, *, ordering: str, patch_size: int, width: int, readout: str,
                 input_noise: float, name: str, frame_decoding: str = "independent",
                 scheduled_sampling: float = 0.0, unroll_frames: int = 0, static_keep: float = 1.0,
                 motion_copy: int = 0):
        super().__init__()
        if spec.codebook_size is None or ordering not in ORDERINGS or readout not in READOUTS:
            raise ValueError(f"code_prior needs a spec with codes, ordering in {ORDERINGS} and readout in "
                             f"{READOUTS}; got {spec}, {ordering!r}, {readout!r}")
        if frame_decoding not in FRAME_DECODINGS:
            raise ValueError(f"head.params.frame_decoding must be one of {FRAME_DECODINGS}; got {frame_decoding!r}")
        if frame_decoding == "maskgit" and ordering != "frame":
            raise ValueError("head.params.frame_decoding=maskgit fills whole frames and needs "
                             f"head.params.ordering=frame; got ordering={ordering!r}")
        if not 0.0 <= scheduled_sampling <= 1.0:
            raise ValueError(f"head.params.scheduled_sampling must lie in [0, 1]; got {scheduled_sampling}")
        if scheduled_sampling > 0 and (ordering != "frame" or frame_decoding != "independent"):
            raise ValueError("head.params.scheduled_sampling replaces whole input frames by the prior's draws and "
                             "needs head.params.ordering=frame with frame_decoding=independent; got "
                             f"ordering={ordering!r}, frame_decoding={frame_decoding!r}")
        if unroll_frames < 0:
            raise ValueError(f"head.params.unroll_frames must be >= 0; got {unroll_frames}")
        if unroll_frames > 0 and (ordering != "frame" or frame_decoding != "independent" or scheduled_sampling > 0):
            raise ValueError("head.params.unroll_frames feeds the prior's expected frames back in training and needs "
                             "head.params.ordering=frame with frame_decoding=independent and scheduled_sampling=0; got "
                             f"ordering={ordering!r}, frame_decoding={frame_decoding!r}, "
                             f"scheduled_sampling={scheduled_sampling}")
        check_static_keep(static_keep, ordering, frame_decoding, unroll_frames)
        check_motion_copy(motion_copy, ordering, frame_decoding, unroll_frames, scheduled_sampling)
        self.frame_decoding, self.scheduled_sampling = frame_decoding, scheduled_sampling
        self.static_keep = static_keep
        self.unroll_frames = unroll_frames
        p = 1 if ordering == "token" else patch_size
        self.ordering, self.patch_size, self.name, self.input_noise = ordering, p, name, input_noise
        self.num_codes, self.grid, self.tokens_per_frame = spec.codebook_size, tuple(spec.grid), spec.tokens_per_frame
        self.frame_tokens = (spec.grid[0] // p) * (spec.grid[1] // p)  # M
        # frame: one table per position inside a patch; token: one table plus the start token (index K).
        self.code_embed = nn.Embedding(self.num_codes * p * p + (ordering == "token"), width)
        if frame_decoding == "maskgit":  # the next frame's visible codes: K codes + the mask (index K) per patch position
            self.next_embed = nn.Embedding((self.num_codes + 1) * p * p, width)
        num_out = self.num_codes * p * p
        if readout == "linear":
            self.to_out = nn.Linear(width, num_out)
        else:
            self.to_logits = None if readout == "tied" else nn.Linear(width, num_out, bias=False)
            self.logit_bias = nn.Parameter(torch.zeros(num_out))
        self.readout_kind = readout
        #: the motion copy of the next frame (:mod:`~futurelat.models.heads.objectives.motion_copy`), or None
        self.copy = MotionCopy(width, motion_copy, self.grid, p, self.num_codes) if motion_copy else None

    def check_trunk(self, trunk: nn.Module) -> None:
        """Raise ``ValueError`` unless ``trunk.causal`` fits the ordering (``"frame"`` or ``"token"``)."""
        if getattr(trunk, "causal", None) != self.ordering:
            raise ValueError(f"code_prior with ordering={self.ordering!r} needs a trunk with causal="
                             f"{self.ordering!r}; {type(trunk).__name__} has causal={getattr(trunk, 'causal', None)!r}")

    # -- embeddings and logits ----------------------------------------------------------------

    def _embed_patches(self, table: nn.Embedding, codes: Tensor, per_position: int) -> Tensor:
        """Codes ``(B, T, N)`` → tokens ``(B, T * M, d)``: the sum over each ``p x p`` patch of ``table``'s
        rows, one block of ``per_position`` rows per position inside the patch."""
        p = self.patch_size
        patches = patchify(codes[..., None], self.grid, p)  # (B, T, M, p*p)
        patches = patches + per_position * torch.arange(p * p, device=codes.device)
        return table(patches).sum(-2).flatten(1, 2)

    def embed_frames(self, codes: Tensor) -> Tensor:
        """Frame-ordering inputs: codes ``(B, T, N)`` → tokens ``(B, T * M, d)``."""
        return self._embed_patches(self.code_embed, codes, self.num_codes)

    def embed_expected(self, probs: Tensor) -> Tensor:
        """Frame-ordering inputs of code distributions: ``probs`` ``(B, T, N, K)`` → the expected input
        tokens ``(B, T * M, d)``; one-hot ``probs`` give :meth:`embed_frames` of their codes."""
        k, p = self.num_codes, self.patch_size
        table = self.code_embed.weight[:k * p * p].view(p * p, k, -1)  # (p*p, K, d)
        patches = patchify(probs, self.grid, p).unflatten(-1, (p * p, k))  # (B, T, M, p*p, K)
        tokens = torch.einsum("btmjk,jkd->btmd", patches.to(table.dtype), table)
        return tokens.flatten(1, 2)

    def embed_next(self, codes: Tensor) -> Tensor:
        """Maskgit inputs: the next frames' codes ``(B, T, N)`` in ``[0, K]`` (``K``: masked) → ``(B, T * M, d)``."""
        return self._embed_patches(self.next_embed, codes, self.num_codes + 1)

    def readout(self, x: Tensor) -> Tensor:
        """Features ``(..., d)`` → logits ``(..., p*p*K)``."""
        if self.readout_kind == "linear":
            return self.to_out(x)
        num_out = self.logit_bias.shape[0]
        weight = self.code_embed.weight[:num_out] if self.to_logits is None else self.to_logits.weight
        return F.linear(x, weight, self.logit_bias)

    def frame_logits(self, x: Tensor) -> Tensor:
        """Frame-ordering outputs ``(B, T * M, d)`` → logits ``(B, T, N, K)`` in raster order."""
        out = self.readout(x)
        return unpatchify(out.view(x.shape[0], -1, self.frame_tokens, out.shape[-1]), self.grid, self.patch_size)

    def token_inputs(self, codes: Tensor) -> Tensor:
        """Token-ordering inputs: the start token (index ``K``) then ``codes`` ``(B, T, N)`` flat → ``(B, 1 + T*N)``.

        Input ``i`` holds token ``i - 1`` and sits at the position of token ``i``, the one it predicts.
        """
        start = codes.new_full((codes.shape[0], 1), self.num_codes)
        return torch.cat([start, codes.flatten(1)], dim=1)

    def logits(self, trunk: nn.Module, codes: Tensor) -> Tensor:
        """Teacher-forced logits for a clip ``codes`` ``(B, T, N)`` → ``(B, T', N, K)``, in parallel.

        ``"frame"``: ``T' = T - 1``, row ``t`` predicts frame ``t + 1`` from frames ``<= t``.
        ``"token"``: ``T' = T``, entry ``(t, j)`` predicts code ``j`` of frame ``t`` from all
        codes before it in raster order. The targets are ``codes[:, T - T':]``.
        """
        if self.ordering == "frame":
            x = trunk(self.embed_frames(codes[:, :-1]))
            if self.copy is None:
                return self.frame_logits(x)
            frames = codes.shape[1] - 1
            prev = F.one_hot(codes[:, :-1], self.num_codes).flatten(0, 1)  # (B * (T-1), N, K)
            x = x.view(-1, self.frame_tokens, x.shape[-1])
            return self.copy.log_probs(self.frame_logits(x)[:, 0], x, prev).unflatten(0, (-1, frames))
        x = trunk(self.code_embed(self.token_inputs(codes)[:, :-1]))  # (B, T*N, d)
        return self.readout(x).view(*codes.shape, self.num_codes)

    # -- training -----------------------------------------------------------------------------

    def _check_codes(self, codes: Tensor | None, name: str, min_frames: int) -> Tensor:
        return check_codes(codes, f"{self.name} head: {name}.codes", self.tokens_per_frame, self.num_codes, min_frames)

    def loss(self, trunk: nn.Module, z: Latents) -> dict[str, Tensor]:
        """Teacher-forced next-code cross-entropy on ``z.codes`` ``(B, T, N)`` (``T >= 2`` for ``"frame"``).

        Returns ``loss`` (mean nats per code), ``accuracy`` (argmax = target, in [0, 1]) and
        ``bits_per_token`` (loss / ln 2), all scalars.

        Raises:
            ValueError: missing codes, wrong shape/dtype, or codes outside ``[0, K)``.
        """
        codes = self._check_codes(z.codes, "z", 2 if self.ordering == "frame" else 1)
        inputs = codes
        if self.training and self.input_noise > 0:
            noisy = torch.rand(codes.shape, device=codes.device) < self.input_noise
            inputs = torch.where(noisy, torch.randint_like(codes, self.num_codes), codes)
        if self.frame_decoding == "maskgit":
            return self._masked_loss(trunk, inputs, codes)
        if self.training and self.scheduled_sampling > 0:
            inputs = self._own_draws(trunk, inputs)
        if self.training and self.unroll_frames > 0:
            logits = self._unrolled_logits(trunk, inputs)
        elif self.ordering == "frame":  # scored in the readout's patch order: the targets move, not the logits
            return patch_order_loss(self.readout, trunk(self.embed_frames(inputs[:, :-1])), codes, self.grid,
                                    self.patch_size, self.num_codes, self.static_keep if self.training else 1.0,
                                    copy=self.copy, inputs=inputs)
        else:
            logits = self.logits(trunk, inputs)
        return code_cross_entropy(logits, codes[:, codes.shape[1] - logits.shape[1]:])

    @torch.no_grad()
    def _own_draws(self, trunk: nn.Module, inputs: Tensor) -> Tensor:
        """Parallel scheduled sampling: ``inputs`` ``(B, T, N)`` with a share ``scheduled_sampling`` of
        frames ``1 .. T-1`` replaced by codes drawn (T = 1) from the teacher-forced prediction of them."""
        drawn = sample_codes(self.logits(trunk, inputs), greedy=False)  # (B, T-1, N), T = 1
        replace = torch.rand(inputs.shape[0], inputs.shape[1] - 1, 1, device=inputs.device) < self.scheduled_sampling
        return torch.cat([inputs[:, :1], torch.where(replace, drawn, inputs[:, 1:])], dim=1)

    def _unrolled_logits(self, trunk: nn.Module, inputs: Tensor) -> Tensor:
        """Unrolled training: clip codes ``(B, T, N)`` → logits ``(B, T - 1, N, K)`` of frames ``1 .. T-1``,
        the last ``unroll_frames`` input frames being the prior's expected code embeddings (module docstring).

        Raises:
            ValueError: ``unroll_frames > T - 2`` (no true input frame left to start from); names the key.
        """
        frames, unroll = inputs.shape[1], self.unroll_frames
        true_inputs = frames - 1 - unroll  # frames 0 .. T - 2 are inputs; the last `unroll` of them are predicted
        if true_inputs < 1:
            raise ValueError(f"{self.name} head: head.params.unroll_frames={unroll} leaves no true input frame in "
                             f"training clips of {frames} latent frames; it must be <= {frames - 2}")
        x, state = trunk.prefill(self.embed_frames(inputs[:, :true_inputs]))
        logits = [self.frame_logits(x)]  # (B, T - 1 - r, N, K): frames 1 .. T - 1 - r
        last = logits[0][:, -1]
        for _ in range(unroll):  # feed frame t's expectation, predict frame t + 1
            last, state = self._expected_step(trunk, torch.softmax(last.detach().float(), -1), state)
            logits.append(last[:, None])
        return torch.cat(logits, dim=1)

    def _masked_loss(self, trunk: nn.Module, inputs: Tensor, codes: Tensor) -> dict[str, Tensor]:
        """Maskgit training: frames ``< T - 1`` of ``inputs`` plus the visible codes of each next frame →
        cross-entropy on the masked codes of frames ``1 ..`` of ``codes`` (mean over masked codes)."""
        target = codes[:, 1:]  # (B, T-1, N)
        masked = cosine_mask(target.shape, target.device)
        x = self.embed_frames(inputs[:, :-1]) + self.embed_next(target.masked_fill(masked, self.num_codes))
        logits = self.frame_logits(trunk(x))  # (B, T-1, N, K)
        out = code_cross_entropy(logits[masked], target[masked])
        out["masked_share"] = masked.float().mean()
        return out

    # -- rollout ------------------------------------------------------------------------------

    def prefill(self, trunk: nn.Module, context: Tensor) -> tuple[Tensor, Any]:
        """Run the context codes ``(B, Tc, N)`` once, in parallel → (next logits, trunk state).

        ``"frame"`` (``Tc >= 1``): logits ``(B, N, K)`` of frame ``Tc``. ``"token"``: logits
        ``(B, 1, K)`` of the code after the raster-order prefix (``context`` ``(B, Tc, N)`` with
        ``Tc >= 0``, or a flat ``(B, L)``, e.g. ending mid-frame). Feed the drawn codes to :meth:`step`.

        Raises:
            ValueError: a ``"maskgit"`` prior (its next-frame logits depend on the visible codes: use
                :meth:`rollout`).
        """
        self._no_maskgit("prefill")
        if self.ordering == "frame":
            x, state = trunk.prefill(self.embed_frames(context))
            return self._next_logits(x[:, -self.frame_tokens:], context[:, -1]), state
        x, state = trunk.prefill(self.code_embed(self.token_inputs(context)))
        return self.readout(x[:, -1:]), state

    def step(self, trunk: nn.Module, codes: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Feed the codes just drawn and advance the trunk state by one step.

        ``"frame"``: ``codes`` ``(B, N)`` (one frame) → logits ``(B, N, K)`` of the next frame.
        ``"token"``: ``codes`` ``(B, 1)`` → logits ``(B, 1, K)`` of the next code.

        Raises:
            ValueError: a ``"maskgit"`` prior (use :meth:`rollout`).
        """
        self._no_maskgit("step")
        if self.ordering == "frame":
            x, state = trunk.step(self.embed_frames(codes[:, None]), state)
            return self._next_logits(x, codes), state
        x, state = trunk.step(self.code_embed(codes), state)
        return self.readout(x), state

    def _no_maskgit(self, method: str) -> None:
        if self.frame_decoding == "maskgit":
            raise ValueError(f"{self.name} head: {method} draws each next frame independently; this prior was "
                             "trained with frame_decoding=maskgit, whose frames are filled by rollout()")

    def check_sampling(self, sampling: Mapping[str, Any] | None) -> None:
        """Raise ``ValueError`` where ``sampling`` asks for what this prior cannot do: ``mean_field`` needs
        the frame ordering with independent decoding. The heads call it when they are built, before
        training; :meth:`rollout` again, for sampling settings changed since."""
        if sampling_options(sampling)["mean_field"] and (self.ordering != "frame" or self.frame_decoding != "independent"):
            raise ValueError(f"{self.name} head: head.params.sampling.mean_field feeds whole expected frames and needs "
                             "ordering=frame with frame_decoding=independent; got "
                             f"ordering={self.ordering!r}, frame_decoding={self.frame_decoding!r}; set "
                             "head.params.sampling.mean_field=false to sample codes")

    def deterministic(self, sampling: Mapping[str, Any] | None) -> bool:
        """Whether :meth:`rollout` gives the same future every call: greedy codes, and for whole-frame
        decoding no Gumbel noise on the confidences (``choice_temperature`` 0)."""
        options = sampling_options(sampling)
        if options["mean_field"]:
            return True
        return options["greedy"] and (self.frame_decoding == "independent" or options["choice_temperature"] == 0)

    def rollout(self, trunk: nn.Module, context: Latents, num_future: int, *, sampling: Mapping[str, Any] | None,
                generator: torch.Generator | None) -> Latents:
        """Sample ``num_future`` frames of codes after ``context.codes`` ``(B, Tc, N)``.

        The context is read once (:meth:`prefill`), then each frame (``"frame"``) or code
        (``"token"``) costs one :meth:`step`; codes are drawn per ``sampling``
        (:func:`~futurelat.models.heads.sampling.sampling_options`) with ``generator`` (or torch's
        global one). Call in eval mode, under ``no_grad``.

        Returns:
            :class:`Latents` with ``codes`` ``(B, num_future, N)`` int64 in ``[0, K)`` and ``latents``
            an empty ``(B, num_future, N, 0)`` float tensor (the backbone decodes the codes). With
            ``sampling.mean_field``: ``latents`` the expected codebook vectors ``(B, num_future, N, D)``
            and ``codes`` ``None`` (the backbone snaps and decodes them).

        Raises:
            ValueError: missing/bad context codes, bad ``sampling`` keys, or ``mean_field`` on a prior
                that is not frame-ordered with independent decoding (:meth:`check_sampling`).
            RuntimeError: ``mean_field`` with no :attr:`code_vectors` (a head built outside ``build_model``).
        """
        codes = self._check_codes(context.codes, "context", 1 if self.ordering == "frame" else 0)
        options = sampling_options(sampling)
        if options["mean_field"]:
            return self._mean_field_rollout(trunk, codes, num_future, options)
        if self.frame_decoding == "maskgit":
            return self._empty_latents(self._maskgit_rollout(trunk, codes, num_future, options, generator))
        draw = draw_options(options)
        bsz, n = codes.shape[0], self.tokens_per_frame
        steps = num_future if self.ordering == "frame" else num_future * n
        logits, state = self.prefill(trunk, codes)
        drawn = []
        for i in range(steps):
            drawn.append(sample_codes(logits, **draw, generator=generator))  # (B, N) or (B, 1)
            if i + 1 < steps:
                logits, state = self.step(trunk, drawn[-1], state)
        return self._empty_latents(torch.cat(drawn, dim=1).view(bsz, num_future, n))

    def _mean_field_rollout(self, trunk: nn.Module, codes: Tensor, num_future: int,
                            options: Mapping[str, Any]) -> Latents:
        """Context codes ``(B, Tc, N)`` → expected codebook vectors ``(B, num_future, N, D)`` (module docstring)."""
        self.check_sampling(options)
        if self.code_vectors is None:
            raise RuntimeError(f"{self.name} head: sampling.mean_field needs the backbone's codebook vectors; build the "
                               "model with futurelat.models.latent_video_model.build_model, which attaches them")
        codebook = self.code_vectors(torch.arange(self.num_codes, device=codes.device)).float()  # (K, D)
        logits, state = self.prefill(trunk, codes)
        expected = []
        for i in range(num_future):
            probs = code_probabilities(logits, temperature=options["temperature"], top_k=options["top_k"])  # (B, N, K)
            expected.append(probs @ codebook)  # (B, N, D)
            if i + 1 < num_future:
                logits, state = self._expected_step(trunk, probs, state)
        return Latents(latents=torch.stack(expected, dim=1), codes=None)

    def _expected_step(self, trunk: nn.Module, probs: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Feed one frame's code distributions ``probs`` ``(B, N, K)`` as their expected code embedding
        (:meth:`embed_expected`) → the next frame's logits ``(B, N, K)`` and the advanced trunk state."""
        x, state = trunk.step(self.embed_expected(probs[:, None]), state)
        return self._next_logits(x, probs), state

    def _next_logits(self, x: Tensor, prev: Tensor) -> Tensor:
        """One frame's trunk outputs ``(B, M, d)`` → the next frame's logits ``(B, N, K)``; with motion copy,
        the mixture's log-probabilities given the frame just read, ``prev``: codes ``(B, N)`` or code
        distributions ``(B, N, K)``."""
        if self.copy is None:
            return self.frame_logits(x)[:, 0]
        if prev.dim() == 2:
            prev = F.one_hot(prev, self.num_codes)
        return self.copy.log_probs(self.frame_logits(x)[:, 0], x, prev)

    def _empty_latents(self, codes: Tensor) -> Latents:
        """Future codes ``(B, Tf, N)`` as :class:`Latents` with an empty ``(B, Tf, N, 0)`` latent tensor."""
        empty = torch.empty(*codes.shape, 0, device=codes.device, dtype=self.code_embed.weight.dtype)
        return Latents(latents=empty, codes=codes)

    # -- whole-frame (maskgit) rollout -----------------------------------------------------------

    def _maskgit_rollout(self, trunk: nn.Module, codes: Tensor, num_future: int, options: Mapping[str, Any],
                         generator: torch.Generator | None) -> Tensor:
        """Context codes ``(B, Tc, N)`` → future codes ``(B, num_future, N)``, each frame filled in
        ``options["steps"]`` passes (see the module docstring)."""
        peek = getattr(trunk, "peek", None)
        if peek is None:
            raise ValueError(f"{self.name} head: frame_decoding=maskgit needs a trunk with peek(x, state) "
                             f"(run one frame without keeping it); {type(trunk).__name__} has none")
        state = None  # the trunk's state after frames < Tc - 1, each with its next frame fully visible
        if codes.shape[1] > 1:
            _, state = trunk.prefill(self.embed_frames(codes[:, :-1]) + self.embed_next(codes[:, 1:]))
        last, future = codes[:, -1], []
        for f in range(num_future):
            tokens = self.embed_frames(last[:, None])  # (B, M, d)
            frame = fill_frame(self, lambda visible: peek(tokens + self.embed_next(visible[:, None]), state)
                               if state is not None else trunk(tokens + self.embed_next(visible[:, None])),
                               last.shape, options, generator)
            future.append(frame)
            if f + 1 < num_future:  # the finished frame, fed once: the state moves on by one frame
                x = tokens + self.embed_next(frame[:, None])
                state = trunk.step(x, state)[1] if state is not None else trunk.prefill(x)[1]
            last = frame
        return torch.stack(future, dim=1)
