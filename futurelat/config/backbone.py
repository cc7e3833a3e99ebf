"""Schemas of the ``backbone`` group (``configs/backbone/*.yaml``).

``backbone.params`` are the constructor keywords of the class registered under ``backbone.name``
(:mod:`futurelat.models.backbones`); the defaults below are the constructors' defaults too, so a
backbone built from a partial config or from Python gets the same model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from futurelat.config.gan import GANConfig


@dataclass
class BackboneConfig:
    """What every backbone option has besides ``params``.

    ``checkpoint``: weights to load (a ``backbone_final.pt`` skips stage 1). ``allow_config_mismatch``:
    load ``checkpoint`` even if the config stored in it defines another model (a warning, not an
    error). ``frames_per_clip``: stage 1 trains on this many random frames of each clip (a video
    tokenizer: this many consecutive frames, see ``Backbone.sample_training_frames``); null when the
    backbone is frozen (no stage 1), or the whole clip. ``gan``: adversarial and perceptual training
    in stage 1 (:class:`futurelat.config.gan.GANConfig`; off by default).
    """

    name: str = "vqvae"
    checkpoint: Optional[str] = None
    allow_config_mismatch: bool = False
    frames_per_clip: Optional[int] = None
    gan: GANConfig = field(default_factory=GANConfig)


@dataclass
class VQVAEParams:
    """:class:`futurelat.models.backbones.vqvae.VQVAE` (per-frame VQ-VAE, EMA codebook).

    ``hidden_channels``: width of the first stage. ``channel_mult``: one stride-2 stage per entry
    (downsampling ``2 ** len``). ``num_res_blocks``: decoder blocks per stage. ``latent_dim``: code
    vector size D. ``codebook_size``: codes K. ``commitment_weight``, ``ema_decay``, ``kmeans_init``,
    ``dead_code_threshold``: vector-quantize-pytorch's codebook training. ``max_search_bytes``: memory
    budget (bytes, >= 4) of the temporaries of the nearest-code search of a frozen VQ-VAE (encode,
    snap): peak memory stays flat in K at the same codes; the search runs in blocks of at most 1 MiB
    (``SEARCH_BLOCK_BYTES``) whatever the budget.
    """

    hidden_channels: int = 32
    channel_mult: List[int] = field(default_factory=lambda: [1, 2])
    num_res_blocks: int = 1
    latent_dim: int = 64
    codebook_size: int = 128  # rather than 512: fewer near-duplicate background codes for the prior to model
    commitment_weight: float = 0.25
    ema_decay: float = 0.99
    kmeans_init: bool = True
    dead_code_threshold: float = 2.0
    max_search_bytes: int = 512 * 2**20  # bytes of (rows x K) distances per chunk of the nearest-code search


@dataclass
class VQVAEConfig(BackboneConfig):
    name: str = "vqvae"
    frames_per_clip: Optional[int] = 2
    params: VQVAEParams = field(default_factory=VQVAEParams)


@dataclass
class MAGVIT2Params:
    """:class:`futurelat.models.backbones.magvit2.MAGVIT2` (causal 3-D conv autoencoder + FSQ).

    ``hidden_channels``: width of the first stage. ``channel_mult``: one stage per entry, of width
    ``hidden_channels * mult``, each halving H and W (blur-pool) after its residual blocks: spatial
    downsampling ``2 ** len``. ``temporal_downsample``: per stage, whether it halves time too (causally):
    ``T`` frames → ``1 + (T - 1) / 2 ** (number of true)`` latent frames. ``num_res_blocks``: residual
    blocks per stage (and in the middle), in the encoder and the decoder. ``levels``: FSQ levels per
    latent channel: ``D = len(levels)``, ``K = prod(levels)`` codes ([8, 5, 5, 5] = 1,000;
    [8, 8, 8, 6, 5] = 15,360 for larger models; no level 2).
    """

    hidden_channels: int = 32
    channel_mult: List[int] = field(default_factory=lambda: [1, 2, 4])
    temporal_downsample: List[bool] = field(default_factory=lambda: [False, True, True])
    num_res_blocks: int = 1
    levels: List[int] = field(default_factory=lambda: [8, 5, 5, 5])


@dataclass
class MAGVIT2Config(BackboneConfig):
    name: str = "magvit2_fsq"
    frames_per_clip: Optional[int] = 17
    params: MAGVIT2Params = field(default_factory=MAGVIT2Params)


#: The Hub checkpoint ``backbone=vjepa2`` loads.
VJEPA2_CHECKPOINT = "facebook/vjepa2-vitl-fpc64-256"


@dataclass
class VJEPA2Params:
    """:class:`futurelat.models.backbones.vjepa2.VJEPA2Backbone` (frozen V-JEPA 2 encoder).

    ``pretrained``: a Hub id or a ``save_pretrained`` directory; or null with ``config``, a dict of
    ``VJEPA2Config`` overrides (random weights). ``crop_size``: frames are resized and centre-cropped
    to it (a multiple of the patch size). ``window_frames``: encode windows of this many frames
    (context and future apart; a multiple of the tubelet size), null = the whole clip.
    ``cache_dir``: the HF hub cache (null = ``$HF_HOME/hub``). ``dtype``: ``float32`` | ``bfloat16``
    | ``float16`` weights.
    """

    pretrained: Optional[str] = VJEPA2_CHECKPOINT
    config: Optional[Dict[str, Any]] = None
    crop_size: int = 256
    window_frames: Optional[int] = None
    cache_dir: Optional[str] = None
    dtype: str = "float32"


@dataclass
class VJEPA2TinyParams(VJEPA2Params):
    """:class:`VJEPA2Params` of a random-weight model: ``init_seed`` alone fixes its weights."""

    pretrained: Optional[str] = None
    init_seed: int = 0


@dataclass
class VJEPA2Config(BackboneConfig):
    name: str = "vjepa2"
    params: VJEPA2Params = field(default_factory=VJEPA2Params)


@dataclass
class VJEPA2TinyConfig(BackboneConfig):
    name: str = "vjepa2"
    params: VJEPA2TinyParams = field(default_factory=VJEPA2TinyParams)
