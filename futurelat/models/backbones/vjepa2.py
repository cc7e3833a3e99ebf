"""Frozen V-JEPA 2 video encoder (Assran et al. 2025, "V-JEPA 2: Self-Supervised Video Models Enable
Understanding, Prediction and Planning"; facebookresearch/vjepa2), through Hugging Face transformers'
``VJEPA2Model`` port.

The encoder is a ViT over 3-D patches ("tubelets") of ``tubelet_size`` frames × ``patch_size`` ×
``patch_size`` pixels with 3-D rotary positions; its output is one token per tubelet. futurelat only
ever uses it frozen: heads learn to predict its latents, and evaluation happens in latent space
(V-JEPA 2 has no pixel decoder). Its own predictor is exposed as a zero-shot baseline,
:meth:`VJEPA2Backbone.predict_future`.

Shape notation: B batch, T frames, C channels (1 or 3), H×W pixels; ``s = tubelet_size`` (2 for
the released checkpoints), T' = T / s latent frames, ``p = patch_size`` (16), g = crop_size / p,
N = g² tokens per latent frame, D = ``hidden_size`` (1024 ViT-L, 1280 ViT-H, 1408 ViT-g).

Token layout: ``VJEPA2Model`` flattens the patch-embedding Conv3d output ``(B, D, T', g, g)``
over its last three axes, so its ``last_hidden_state`` ``(B, T'·N, D)`` is time-major:
token ``t'·N + i·g + j`` is latent frame ``t'``, grid row ``i``, column ``j`` (the RoPE
position ids in ``VJEPA2RopeAttention.get_position_ids`` decode indices the same way).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from futurelat.config.backbone import VJEPA2_CHECKPOINT, VJEPA2Params, VJEPA2TinyParams
from futurelat.models.base import Backbone, Latents, LatentSpec, check_frames
from futurelat.utils.hub import WeightsSource, load_offline_first

if TYPE_CHECKING:  # transformers is imported when a model is built: it costs seconds at import
    from transformers import VJEPA2Model

log = logging.getLogger(__name__)

#: The released checkpoints (``hidden_size`` 1024, 1280, 1408; 256 px except ViT-g/384).
DEFAULT_CHECKPOINT = VJEPA2_CHECKPOINT
CHECKPOINTS = (
    "facebook/vjepa2-vitl-fpc64-256",
    "facebook/vjepa2-vith-fpc64-256",
    "facebook/vjepa2-vitg-fpc64-256",
    "facebook/vjepa2-vitg-fpc64-384",
)
#: ImageNet statistics, as VJEPA2VideoProcessor normalizes (RGB).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: How the loading errors name these weights (:func:`futurelat.utils.hub.load_offline_first`).
WEIGHTS = WeightsSource(what="V-JEPA 2 weights", key="backbone.params.pretrained", cache_key="backbone.params.cache_dir",
                        saved_by="VJEPA2Model.save_pretrained", example=DEFAULT_CHECKPOINT,
                        contents="V-JEPA 2 model in that directory (need config.json and model.safetensors)",
                        tail=f"Known ids: {', '.join(CHECKPOINTS)}.")


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def load_pretrained(pretrained: str, crop_size: int, cache_dir: str | None = None) -> tuple[VJEPA2Model, bool]:
    """Load ``VJEPA2Model`` weights from a local directory or the HF cache, downloading a missing hub id.

    A hub id is looked up in the cache first (``local_files_only=True``, no network). On a miss it is
    downloaded into the cache as transformers does, unless offline mode is on or the Hub does not
    answer: then the error comes at once (:func:`futurelat.utils.hub.load_offline_first`), never after network retries.

    Args:
        pretrained: a hub id (``facebook/vjepa2-vitl-fpc64-256``, see :data:`CHECKPOINTS`), or a
            directory written by ``save_pretrained`` (``config.json`` + ``model.safetensors``).
        crop_size: input resolution in pixels; overrides the checkpoint's ``crop_size`` (it only sets the
            RoPE token grid ``crop_size / patch_size``, so any multiple of ``patch_size`` works).
        cache_dir: the hub cache to read and download into; ``None`` = huggingface_hub's default
            (``$HF_HOME/hub``).

    Returns:
        The model and whether the checkpoint held predictor weights (``False`` when they were missing
        and transformers initialised them randomly).

    Raises:
        FileNotFoundError: the directory does not exist or holds no model, or the hub id is not cached
            and cannot be downloaded (offline mode, no connection, or the download failed); the
            message says why and how to get the weights.
    """
    return load_offline_first(lambda name, local_only: _from_pretrained(name, crop_size, cache_dir, local_only),
                              pretrained, cache_dir, WEIGHTS)


def _from_pretrained(source: str, crop_size: int, cache_dir: str | None,
                     local_files_only: bool) -> tuple[VJEPA2Model, bool]:
    """``VJEPA2Model.from_pretrained`` → (model, has predictor weights); raises its ``OSError`` on a miss."""
    from transformers import VJEPA2Model

    model, info = VJEPA2Model.from_pretrained(source, local_files_only=local_files_only, cache_dir=cache_dir,
                                              crop_size=crop_size, output_loading_info=True)
    has_predictor = not any(key.startswith("predictor.") for key in info["missing_keys"])
    return model, has_predictor


def build_random(config: dict[str, Any], crop_size: int, seed: int = 0) -> VJEPA2Model:
    """A randomly initialised ``VJEPA2Model`` from ``VJEPA2Config`` defaults updated with ``config``.

    The weights are a function of ``seed`` alone (drawn under a forked, seeded torch RNG), so
    every process that builds the same config gets the same backbone: the latents cached by
    ``python -m futurelat.cache`` match those a later training or evaluation run computes.

    Raises:
        ValueError: a key of ``config`` (``backbone.params.config``) is not a ``VJEPA2Config`` field, or
            its ``crop_size`` disagrees with ``backbone.params.crop_size``.
    """
    from transformers import VJEPA2Config, VJEPA2Model

    valid = list(VJEPA2Config.__annotations__)
    unknown = sorted(set(config) - set(valid))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(f'backbone.params.config.{k}' for k in unknown)}; "
                         f"valid VJEPA2Config keys: {', '.join(valid)}")
    if config.get("crop_size", crop_size) != crop_size:
        raise ValueError(f"backbone.params.config.crop_size={config['crop_size']} disagrees with "
                         f"backbone.params.crop_size={crop_size}; set only backbone.params.crop_size")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return VJEPA2Model(VJEPA2Config(**{**config, "crop_size": crop_size}))


# --------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------


def preprocess(frames: Tensor, crop_size: int) -> Tensor:
    """Frames ``(B, T, C, H, W)`` in [0, 1], C ∈ {1, 3} → normalized ``(B, T, 3, crop, crop)`` pixels.

    Resizes the shorter side to ``crop_size`` (bilinear, antialiased) and center-crops the longer one,
    unless the frames already are ``crop × crop``; grayscale is repeated to RGB; then
    ``(x − mean) / std`` with the ImageNet statistics. Unlike ``VJEPA2VideoProcessor`` (which resizes
    to ``crop·256/224`` before cropping, discarding a 12 % border) the whole square frame is kept:
    objects near the edge matter for prediction.

    Raises:
        ValueError: frames are not ``(B, T, C, H, W)`` float, or ``C`` is not 1 or 3.
    """
    check_frames(frames)
    b, t, c, h, w = frames.shape
    if c not in (1, 3):
        raise ValueError(f"vjepa2 takes 1- or 3-channel frames (B, T, C, H, W); got shape {tuple(frames.shape)}")
    x = frames.reshape(b * t, c, h, w)
    if (h, w) != (crop_size, crop_size):
        scale = crop_size / min(h, w)
        size = (max(crop_size, round(h * scale)), max(crop_size, round(w * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        top, left = (size[0] - crop_size) // 2, (size[1] - crop_size) // 2
        x = x[:, :, top:top + crop_size, left:left + crop_size]
    x = x.expand(-1, 3, -1, -1) if c == 1 else x
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).reshape(b, t, 3, crop_size, crop_size)


# --------------------------------------------------------------------------------------
# The backbone
# --------------------------------------------------------------------------------------


#: The defaults of ``backbone.params`` (:class:`futurelat.config.backbone.VJEPA2Params`; ``init_seed``:
#: :class:`~futurelat.config.backbone.VJEPA2TinyParams`), the constructor's too.
_DEFAULTS = VJEPA2Params()


class VJEPA2Backbone(Backbone):
    """Frozen V-JEPA 2 encoder: frames ``(B, T, C, H, W)`` → latents ``(B, T/s, N, D)``; no decoder.

    Args:
        pretrained: hub id, read from the HF cache or downloaded into it (default
            :data:`DEFAULT_CHECKPOINT`; also the ViT-H/g ids in :data:`CHECKPOINTS`), or a local
            ``save_pretrained`` directory; ``None`` with ``config``.
        config: ``VJEPA2Config`` overrides for randomly initialised weights instead of loading (tests
            and CPU demos: ``configs/backbone/vjepa2_tiny.yaml``); needs ``pretrained=None``.
        crop_size: frames are resized/cropped to ``crop_size``² pixels (256 for the released models);
            a multiple of ``patch_size``.
        window_frames: frames per independently encoded window (a multiple of ``s``), or ``None`` for
            the whole clip at once. The encoder attends bidirectionally over all the frames it is
            given, so encoding context and future together leaks the future into the context
            latents; with ``window_frames = context_frames`` they are encoded separately.
        cache_dir: hub cache to read ``pretrained`` from (and download it into); ``None`` =
            huggingface_hub's default.
        dtype: ``float32`` | ``bfloat16`` | ``float16``, the weights' dtype; latents are returned float32.
        init_seed: with ``config``, the seed of the random weights (the same in every process, so
            cached latents and a later run's encodings agree).

    Raises:
        ValueError: bad ``crop_size``/``window_frames``/``dtype``/``config``, or neither/both of
            ``pretrained`` and ``config``; each message names the ``backbone.params`` key.
        FileNotFoundError: weights neither cached nor downloadable (see :func:`load_pretrained`).
    """

    has_decoder = False
    trainable = False
    discrete = False

    def __init__(self, pretrained: str | None = _DEFAULTS.pretrained, config: dict[str, Any] | None = _DEFAULTS.config,
                 crop_size: int = _DEFAULTS.crop_size, window_frames: int | None = _DEFAULTS.window_frames,
                 cache_dir: str | None = _DEFAULTS.cache_dir, dtype: str = _DEFAULTS.dtype,
                 init_seed: int = VJEPA2TinyParams.init_seed):
        super().__init__()
        if (pretrained is None) == (config is None):
            raise ValueError("vjepa2: set exactly one of backbone.params.pretrained (load weights) and "
                             "backbone.params.config (random weights; then pretrained=null); got "
                             f"pretrained={pretrained!r}, config={config!r}")
        if dtype not in _DTYPES:
            raise ValueError(f"backbone.params.dtype must be one of {', '.join(_DTYPES)}; got {dtype!r}")
        if config is not None:
            self.model, self.has_predictor = build_random(dict(config), crop_size, init_seed), True
        else:
            self.model, self.has_predictor = load_pretrained(pretrained, crop_size, cache_dir)
        cfg = self.model.config
        if not isinstance(cfg.patch_size, int) or crop_size % cfg.patch_size:
            raise ValueError(f"backbone.params.crop_size={crop_size} must be a multiple of the model's "
                             f"patch_size={cfg.patch_size}")
        if cfg.in_chans != 3:
            raise ValueError(f"vjepa2 feeds RGB frames; the model has in_chans={cfg.in_chans} (backbone.params.config)")
        if window_frames is not None and (window_frames < 1 or window_frames % cfg.tubelet_size):
            raise ValueError(f"backbone.params.window_frames={window_frames} must be a positive multiple of "
                             f"the tubelet size ({cfg.tubelet_size}) or null")
        self.crop_size = crop_size
        self.window_frames = window_frames
        self.tubelet_size = cfg.tubelet_size
        self.grid = crop_size // cfg.patch_size
        self.latent_dim = cfg.hidden_size
        self.model.to(_DTYPES[dtype])
        self.freeze()

    # ---------------------------------------------------------------- frozen

    def train(self, mode: bool = True) -> "VJEPA2Backbone":
        """Always eval mode (no dropout/drop-path): the backbone is frozen whatever ``mode`` says."""
        return super().train(False)

    def forward(self, frames: Tensor) -> dict[str, Tensor]:
        """Not available: V-JEPA 2 is frozen in futurelat (``trainable = False``).

        Raises:
            RuntimeError: always; stage 1 (``backbone``) is skipped for this backbone.
        """
        raise RuntimeError("backbone 'vjepa2' is frozen (pretrained V-JEPA 2) and not trainable: there is no "
                           "stage-1 (backbone) step; train a head on its latents instead")

    def decode(self, z: Latents) -> Tensor:
        """Not available.

        Raises:
            ValueError: always; V-JEPA 2 has no pixel decoder, so evaluation is in latent space.
        """
        raise ValueError("V-JEPA 2 has no pixel decoder: its latents cannot be decoded to frames; "
                         "evaluate predictions in latent space")

    # ---------------------------------------------------------------- shapes

    def latent_spec(self, frame_size: tuple[int, int]) -> LatentSpec:
        """``LatentSpec(D, (g, g), None, s)``: frames of any ``frame_size = (H, W)`` are resized to
        ``crop_size``², so the grid does not depend on it.

        Raises:
            ValueError: ``frame_size`` is not two positive sizes.
        """
        if len(frame_size) != 2 or min(frame_size) < 1:
            raise ValueError(f"vjepa2: frame_size must be (H, W) with positive sizes; got {frame_size}")
        return LatentSpec(latent_dim=self.latent_dim, grid=(self.grid, self.grid), codebook_size=None,
                          temporal_downsample=self.tubelet_size)

    # ---------------------------------------------------------------- encoding

    def _encode_tokens(self, pixels: Tensor) -> Tensor:
        """Preprocessed ``(B, T, 3, crop, crop)`` → encoder tokens ``(B, T'·N, D)`` (time-major)."""
        return self.model.encoder(pixel_values_videos=pixels).last_hidden_state

    def _check_frames(self, frames: Tensor, what: str) -> None:
        check_frames(frames, what)
        t = frames.shape[1]
        if t == 0 or t % self.tubelet_size:
            raise ValueError(f"vjepa2: {what} has T={t} frames (shape {tuple(frames.shape)}); T must be a "
                             f"positive multiple of tubelet_size={self.tubelet_size}")

    @torch.no_grad()
    def encode(self, frames: Tensor) -> Latents:
        """Frames ``(B, T, C, H, W)`` in [0, 1] → :class:`Latents` ``(B, T/s, N, D)`` float32, ``codes=None``.

        The frames are split into consecutive windows of ``window_frames`` (the whole clip when
        ``None``); the last window may be shorter (a multiple of ``tubelet_size``). Windows are
        encoded independently, those of equal length as one batch, and concatenated in time; RoPE
        time positions restart in every window. With ``window_frames = dataset.context_frames`` the
        context latents never see the future frames.

        Raises:
            ValueError: frames mis-shaped, or ``T`` not a positive multiple of ``tubelet_size``.
        """
        self._check_frames(frames, "frames")
        b, t = frames.shape[:2]
        window = min(self.window_frames or t, t)
        pixels = preprocess(frames, self.crop_size)
        full, rest = divmod(t, window)
        parts = [rearrange(self._encode_tokens(rearrange(pixels[:, :full * window], "b (k t) c h w -> (b k) t c h w",
                                                         t=window)),
                           "(b k) (t n) d -> b (k t) n d", b=b, n=self.grid * self.grid)]
        if rest:  # the shorter last window
            parts.append(rearrange(self._encode_tokens(pixels[:, full * window:]), "b (t n) d -> b t n d",
                                   n=self.grid * self.grid))
        latents = torch.cat(parts, dim=1)
        return Latents(latents=latents.float())

    # ---------------------------------------------------------------- zero-shot prediction

    @torch.no_grad()
    def predict_future(self, context_frames: Tensor, num_future_latent_frames: int) -> Tensor:
        """V-JEPA 2's own predictor as a zero-shot baseline: context ``(B, Tc, C, H, W)`` in [0, 1] →
        predicted latents ``(B, Tf', N, D)`` float32 of the next ``Tf' = num_future_latent_frames``
        latent frames, in the space of :meth:`encode`'s latents.

        The encoder sees only the context (as one window, whatever ``window_frames``), like V-JEPA's
        masked context encoder: its ``Nc = Tc/s · N`` tokens take positions ``0 .. Nc−1``. The
        predictor then gets ``context_mask = [arange(Nc)]`` and mask tokens at the future positions
        ``target_mask = [arange(Nc, Nc + Tf'·N)]``. No placeholder future frames are needed:
        ``VJEPA2Model.forward`` would run its encoder over all frames, placeholders included, and
        leak them into the context tokens, so the predictor is called directly.

        Raises:
            ValueError: the checkpoint has no predictor weights, ``Tc`` is not a positive multiple of
                ``tubelet_size``, or ``num_future_latent_frames < 1``.
        """
        if not self.has_predictor:
            raise ValueError("vjepa2: this checkpoint has no predictor weights (backbone.params.pretrained); "
                             "predict_future needs a V-JEPA 2 checkpoint with its predictor")
        if num_future_latent_frames < 1:
            raise ValueError(f"vjepa2: num_future_latent_frames must be >= 1; got {num_future_latent_frames}")
        self._check_frames(context_frames, "context_frames")
        b = context_frames.shape[0]
        n = self.grid * self.grid
        tokens = self._encode_tokens(preprocess(context_frames, self.crop_size))  # (B, Nc, D)
        nc, nf = tokens.shape[1], num_future_latent_frames * n
        positions = torch.arange(nc + nf, device=tokens.device)
        context_mask = [positions[:nc].expand(b, nc)]  # (B, Nc) indices of context tokens
        target_mask = [positions[nc:].expand(b, nf)]  # (B, Nf) indices of future tokens
        out = self.model.predictor(encoder_hidden_states=tokens, context_mask=context_mask,
                                   target_mask=target_mask).last_hidden_state  # (B, Nf, D)
        return rearrange(out, "b (t n) d -> b t n d", n=n).float()
