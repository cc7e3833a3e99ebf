"""Schemas of the ``head`` group (``configs/head/*.yaml``).

``head.params`` are the constructor keywords of the class registered under ``head.name``
(:mod:`futurelat.models.heads`), flat as in the YAML, with the nested ``sampling`` block.
Value sets ("``l1`` | ``mse``", odd kernels, patch sizes that divide the grid) are checked by the
heads when they are built, before training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional


@dataclass
class HeadConfig:
    """What every head option has besides ``params``: ``checkpoint`` (a ``head_final.pt``
    skips stage 2) and ``allow_config_mismatch`` (load it even if the config stored in it defines
    another model: a warning, not an error)."""

    name: str = "mamba"
    checkpoint: Optional[str] = None
    allow_config_mismatch: bool = False


@dataclass
class AnyHeadConfig(HeadConfig):
    """``base_head``: a head of your own (``name``: a ``"module:attr"`` path or a name registered in
    :data:`futurelat.registry.HEADS`), whose ``params`` are its constructor's keywords, unchecked here
    (the builder refuses keys the constructor does not take)."""

    name: str = "???"
    params: Dict[str, Any] = field(default_factory=dict)


@dataclass
class CodeSampling:
    """Sampling codes (autoregressive objectives): ``greedy`` argmax, else ancestral sampling at
    ``temperature`` (> 0) from the ``top_k`` most likely codes (null = all). Whole-frame decoding
    (``frame_decoding: maskgit``) fills each future frame in ``steps`` (>= 1) refinement passes,
    keeping the most confident codes each pass; ``choice_temperature`` (>= 0) scales the Gumbel noise
    added to the confidences (MaskGIT's, annealed linearly to 0 over the passes; 0 = none).
    ``mean_field`` (frame ordering, independent decoding): no draw at all; each future frame is the
    expected codebook vector under the (temperature / top-k) distribution, decoded after snapping, and
    the next step reads the expected code embedding: one deterministic rollout, the prior's point
    estimate (futurelat/models/heads/objectives/code_prior.py)."""

    greedy: bool = False
    temperature: float = 1.0
    top_k: Optional[int] = None
    steps: int = 8
    choice_temperature: float = 4.5
    mean_field: bool = False


@dataclass
class MambaParams:
    """:class:`futurelat.models.heads.mamba.MambaHead` (Mamba-2 next-frame predictor).

    ``objective``: ``autoregressive`` (a prior over codes) | ``regression`` (latents, ``loss`` =
    ``l1`` | ``mse`` | ``smooth_l1`` on standardized latents). ``ordering``: ``frame`` (the scan runs
    over time, all N codes of the next frame at once) | ``token`` (raster order over all frames).
    Frame ordering: ``spatial_kernel``, a depthwise conv over the grid inside each step;
    ``patch_size``, each position holds a ``p x p`` patch of codes. ``input_noise``:
    autoregressive, the fraction of input codes replaced by random ones; regression, the std of
    Gaussian noise on the standardized inputs. ``pixel_loss_weight`` (>= 0) x the pixel MSE of
    ``pixel_loss_frames`` decoded predicted frames per clip, plus ``pixel_ssim_weight`` (>= 0) x
    their ``1 - SSIM`` (regression, needs a decoder).
    ``backend``: ``auto`` (mamba-ssm kernels when installed) | the pure-PyTorch scan.
    ``frame_decoding`` (autoregressive, frame ordering): ``independent`` (all codes of the next frame
    at once) | ``maskgit`` (masked token modelling, each frame filled in ``sampling.steps`` passes).
    ``scheduled_sampling`` (autoregressive, frame ordering, independent decoding): the share in [0, 1]
    of input frames replaced in training by the prior's own draws (parallel scheduled sampling; 0 = off).
    ``unroll_frames`` (autoregressive, frame ordering, independent decoding): the last input frames of
    each training clip fed as the prior's own mean-field predictions, no gradient through them (unrolled
    training; ``dataset.future_frames - 1`` trains the very rollout the evaluation runs; 0 = off).
    ``static_keep`` (autoregressive, frame ordering, independent decoding, no unrolling): the share in
    (0, 1] of static tokens (patches whose next-frame codes equal their own) scored in training, each
    weighted by its inverse; every moving token is scored (1 = all).
    ``motion_copy`` (autoregressive, frame ordering, independent decoding, no unrolling or scheduled
    sampling): 0 (off) or a radius R in codes; each next-frame code's distribution mixes the prior's own
    with a copy of the previous frame's codes moved by up to R codes along each axis, by per-position
    offset weights and per-code gates (futurelat/models/heads/objectives/motion_copy.py).
    """

    objective: str = "autoregressive"
    loss: str = "l1"
    ordering: str = "frame"
    d_model: int = 64
    num_layers: int = 4
    d_state: int = 16
    expand: int = 2
    head_dim: int = 16
    conv_kernel: int = 4
    spatial_kernel: int = 3
    pixel_loss_weight: float = 0.0
    pixel_loss_frames: int = 2
    pixel_ssim_weight: float = 0.0
    patch_size: int = 2
    mlp_ratio: float = 2.0
    tie_embeddings: bool = True
    chunk_size: int = 64
    dropout: float = 0.0
    input_noise: float = 0.1
    scheduled_sampling: float = 0.0
    unroll_frames: int = 0
    static_keep: float = 1.0
    motion_copy: int = 0
    backend: str = "auto"
    frame_decoding: str = "independent"
    sampling: CodeSampling = field(default_factory=CodeSampling)


@dataclass
class MambaConfig(HeadConfig):
    name: str = "mamba"
    params: MambaParams = field(default_factory=MambaParams)


@dataclass
class TransformerParams:
    """:class:`futurelat.models.heads.transformer.TransformerHead`.

    ``objective``: ``regression`` (context latents in, all future latents out) | ``autoregressive``
    (a VideoGPT-style prior over codes; ``ordering`` ``frame`` | ``token``). ``context_latents``:
    context latent frames, null = those of ``dataset.context_frames`` (divided by the backbone's temporal
    downsampling s; ``1 + (T - 1) / s`` for a backbone that encodes the first frame alone).
    ``patch_size``: each token holds a ``p x p`` patch of latents / codes (ignored by ordering
    token). ``position``: ``rope`` (factorized t, h, w) | ``sincos`` | ``alibi`` (token ordering).
    Regression only: ``attention`` ``full`` | ``factorized`` (space then time, ViViT-style);
    ``spatial_kernel`` 0 (off) or odd k, a depthwise k x k conv over each frame's tokens before every
    block; ``temporal_kernel`` 1 or odd kt, that conv spanning kt frames; ``conv_factorization``
    ``joint`` (one kt x k x k conv) | ``2+1d``; ``loss`` ``mse`` | ``l1`` | ``smooth_l1``;
    ``target`` ``absolute`` | ``residual``; ``pixel_loss_weight`` / ``pixel_loss_frames`` /
    ``pixel_ssim_weight`` as for :class:`MambaParams`. ``query_chunk``: queries per attention call
    with a mask or ALiBi bias.
    ``frame_decoding``, ``scheduled_sampling``, ``unroll_frames``, ``static_keep``, ``motion_copy``: as for :class:`MambaParams`
    (autoregressive, ordering ``frame``).
    ``backend``: the kernel of attention with a mask or ALiBi bias over a whole sequence (training,
    prefill): ``auto`` (FlexAttention, compiled, on CUDA; SDPA with a per-chunk bias elsewhere) |
    ``sdpa`` | ``flex`` (FlexAttention everywhere; on CPU eager and forward-only). Decode steps
    against the KV cache always use SDPA (futurelat/models/heads/flex.py).
    """

    objective: str = "regression"
    ordering: str = "frame"
    context_latents: Optional[int] = None
    d_model: int = 128
    num_layers: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    patch_size: int = 2
    position: str = "rope"
    attention: str = "full"
    spatial_kernel: int = 0
    temporal_kernel: int = 1
    conv_factorization: str = "joint"
    loss: str = "mse"
    target: str = "absolute"
    pixel_loss_weight: float = 0.0
    pixel_loss_frames: int = 2
    pixel_ssim_weight: float = 0.0
    query_chunk: int = 1024
    backend: str = "auto"
    frame_decoding: str = "independent"
    scheduled_sampling: float = 0.0
    unroll_frames: int = 0
    static_keep: float = 1.0
    motion_copy: int = 0
    sampling: CodeSampling = field(default_factory=CodeSampling)


@dataclass
class TransformerConfig(HeadConfig):
    name: str = "transformer"
    params: TransformerParams = field(default_factory=TransformerParams)


@dataclass
class FlowSampling:
    """Integrating the velocity from noise (t=0) to data (t=1): ``solver`` ``euler`` | ``heun``,
    ``steps`` ODE steps, classifier-free ``guidance_scale`` (1 = plain conditional sampling) and
    ``noise_scale`` (std of x_0: 1 samples the learned distribution, 0 is deterministic)."""

    solver: str = "heun"
    steps: int = 10
    guidance_scale: float = 1.0
    noise_scale: float = 1.0


@dataclass
class FlowDiTParams:
    """:class:`futurelat.models.heads.flow_dit.FlowDiTHead` (rectified flow, adaLN-Zero DiT;
    Peebles & Xie 2023).

    ``conditioning``: ``in_context`` | ``cross_attention``. ``context_dropout``: the fraction of
    steps that train the unconditional velocity. ``time_sampling``: ``uniform`` | ``logit_normal``.
    ``position``: ``sincos`` | ``rope``. ``prediction``: ``velocity`` | ``data`` (x-prediction).
    ``target``: ``absolute`` | ``residual`` (the change from the last context frame).
    """

    context_latents: Optional[int] = None
    d_model: int = 128
    num_layers: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    patch_size: int = 4
    conditioning: str = "in_context"
    context_dropout: float = 0.1
    time_sampling: str = "uniform"
    position: str = "sincos"
    prediction: str = "velocity"
    dropout: float = 0.0
    target: str = "absolute"
    sampling: FlowSampling = field(default_factory=FlowSampling)


@dataclass
class FlowDiTConfig(HeadConfig):
    name: str = "flow_dit"
    params: FlowDiTParams = field(default_factory=FlowDiTParams)
