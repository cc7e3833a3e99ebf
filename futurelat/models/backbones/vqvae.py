"""Per-frame VQ-VAE tokenizer (van den Oord et al. 2017, "Neural Discrete Representation Learning").

Conv encoder → EMA vector quantizer → conv/transposed-conv decoder, applied to every
frame independently. The quantizer is ``vector_quantize_pytorch.VectorQuantize``
(lucidrains/vector-quantize-pytorch) with an exponential-moving-average codebook
(decay ``ema_decay``), commitment loss (weight ``commitment_weight``, 0.25 as in the
paper), k-means initialisation and dead-code replacement.

Shape notation: B batch, T frames, C channels, H×W pixels, h×w = (H/f)×(W/f) token
grid with f = 2 ** len(channel_mult), N = h·w tokens per frame, D = ``latent_dim``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from vector_quantize_pytorch import VectorQuantize

from futurelat.config.backbone import VQVAEParams
from futurelat.models.base import Backbone, Latents, LatentSpec, check_frames


# --------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=min(8, channels), num_channels=channels)


class ResBlock(nn.Module):
    """Pre-norm residual block: ``(B, c, h, w) → (B, c, h, w)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.block = nn.Sequential(
            _norm(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            _norm(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


class Encoder(nn.Module):
    """``(B, C, H, W)`` in [0, 1] → ``(B, D, H/f, W/f)`` with f = 2 ** len(channel_mult).

    Every stage is a stride-2 4×4 conv and a 1×1 conv (receptive field 10 px for 4 px tokens), so no layer runs at full resolution
    (the cost that matters on a CPU). The encoder has no normalisation layer and a small
    receptive field on purpose: a patch's latent then depends only on nearby pixels, so all
    empty (black) patches map to one code instead of hundreds of look-alike codes that a
    prior would have to tell apart (GroupNorm mixes whole-frame statistics into every patch).
    """

    def __init__(self, in_channels: int, hidden_channels: int, channel_mult: list[int], latent_dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for mult in channel_mult:
            out = hidden_channels * mult
            layers += [nn.Conv2d(channels, out, 4, stride=2, padding=1), nn.SiLU(),
                       nn.Conv2d(out, out, 1), nn.SiLU()]
            channels = out
        layers += [nn.Conv2d(channels, latent_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """``(B, D, h, w)`` → ``(B, C, h·f, w·f)`` in [0, 1] (sigmoid output); mirrors :class:`Encoder`."""

    def __init__(self, out_channels: int, hidden_channels: int, channel_mult: list[int],
                 num_res_blocks: int, latent_dim: int):
        super().__init__()
        channels = hidden_channels * channel_mult[-1]
        layers: list[nn.Module] = [nn.Conv2d(latent_dim, channels, 3, padding=1)]
        outs = [hidden_channels * m for m in reversed(channel_mult[:-1])] + [None]
        for out in outs:
            layers += [ResBlock(channels) for _ in range(num_res_blocks)]
            if out is None:  # last stage: straight to pixels
                layers += [_norm(channels), nn.SiLU(), nn.ConvTranspose2d(channels, out_channels, 4, stride=2, padding=1)]
            else:
                layers += [nn.ConvTranspose2d(channels, out, 4, stride=2, padding=1)]
                channels = out
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.net(z))


# --------------------------------------------------------------------------------------
# The backbone
# --------------------------------------------------------------------------------------


#: The defaults of ``backbone.params`` (:class:`futurelat.config.backbone.VQVAEParams`), the
#: constructor's too: one source for configs and Python callers.
_DEFAULTS = VQVAEParams()

#: Bytes of scores :meth:`VQVAE.nearest_codes` computes per block when its budget allows more: a block
#: that stays in a core's L2 cache (measured: docs/results.md, "Speed benchmarks").
SEARCH_BLOCK_BYTES = 2**20


def search_block_rows(num_latents: int, num_codes: int, budget: int) -> int:
    """Latents per block of :meth:`VQVAE.nearest_codes`: as many ``num_codes``-long float32 score rows as
    ``min(budget, SEARCH_BLOCK_BYTES)`` bytes hold, at least 1 and at most ``num_latents``."""
    return max(1, min(num_latents, min(budget, SEARCH_BLOCK_BYTES) // (4 * num_codes)))


class VQVAE(Backbone):
    """Per-frame VQ-VAE: frames ``(B, T, C, H, W)`` ↔ codes ``(B, T, N)`` / latents ``(B, T, N, D)``.

    Every default but ``in_channels`` is ``configs/backbone/vqvae.yaml``'s, from
    :class:`futurelat.config.backbone.VQVAEParams`.

    Args:
        in_channels: C, 1 or 3.
        hidden_channels: width of the first conv stage.
        channel_mult: width multiplier per downsampling stage; each stage halves H and W,
            so ``[1, 2]`` gives a 4× smaller token grid (64×64 → 16×16).
        num_res_blocks: residual blocks per decoder stage (the encoder has none, see :class:`Encoder`).
        latent_dim: D, the codebook vector size.
        codebook_size: K, number of codes.
        commitment_weight: β of the commitment loss ``β‖z_e − sg(z_q)‖²``.
        ema_decay: decay of the EMA codebook update.
        kmeans_init: initialise the codebook by k-means on the first batch (avoids the
            all-black start an L1-trained VQ-VAE otherwise sits on for 150+ steps).
        dead_code_threshold: codes whose EMA cluster size falls below this are replaced
            by random encoder outputs of the current batch.
        max_search_bytes: memory budget of :meth:`nearest_codes`' temporaries (bytes), whatever K.

    The codebook is updated by EMA (no gradient), so gradients reach the encoder by the
    plain straight-through estimator; vector-quantize-pytorch's rotation trick is
    switched off to keep the classic VQ-VAE estimator.
    """

    def __init__(self, in_channels: int = 3, hidden_channels: int = _DEFAULTS.hidden_channels,
                 channel_mult: list[int] | tuple[int, ...] = tuple(_DEFAULTS.channel_mult),
                 num_res_blocks: int = _DEFAULTS.num_res_blocks, latent_dim: int = _DEFAULTS.latent_dim,
                 codebook_size: int = _DEFAULTS.codebook_size, commitment_weight: float = _DEFAULTS.commitment_weight,
                 ema_decay: float = _DEFAULTS.ema_decay, kmeans_init: bool = _DEFAULTS.kmeans_init,
                 dead_code_threshold: float = _DEFAULTS.dead_code_threshold,
                 max_search_bytes: int = _DEFAULTS.max_search_bytes):
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"backbone.in_channels must be 1 or 3, got {in_channels}")
        if max_search_bytes < 4:
            raise ValueError(f"backbone.params.max_search_bytes must be >= 4 (one float32), got {max_search_bytes}")
        self.max_search_bytes = int(max_search_bytes)
        channel_mult = list(channel_mult)
        self.in_channels = in_channels
        self.downsample = 2 ** len(channel_mult)
        self.latent_dim = latent_dim
        self.codebook_size = codebook_size
        self.encoder = Encoder(in_channels, hidden_channels, channel_mult, latent_dim)
        self.decoder = Decoder(in_channels, hidden_channels, channel_mult, num_res_blocks, latent_dim)
        self.quantizer = VectorQuantize(
            dim=latent_dim,
            codebook_size=codebook_size,
            decay=ema_decay,
            commitment_weight=commitment_weight,
            kmeans_init=kmeans_init,
            kmeans_iters=10,
            threshold_ema_dead_code=dead_code_threshold,
            rotation_trick=False,
        )

    # ---------------------------------------------------------------- shapes

    def latent_spec(self, frame_size: tuple[int, int]) -> LatentSpec:
        height, width = frame_size
        if height % self.downsample or width % self.downsample:
            raise ValueError(
                f"vqvae downsamples by {self.downsample}; frame size {height}x{width} is not divisible by it "
                f"(change dataset.image_size or backbone.params.channel_mult)"
            )
        grid = (height // self.downsample, width // self.downsample)
        return LatentSpec(latent_dim=self.latent_dim, grid=grid, codebook_size=self.codebook_size)

    @property
    def codebook(self) -> Tensor:
        """``(K, D)`` codebook vectors (a view of the quantizer's EMA buffer)."""
        return self.quantizer.codebook

    # ---------------------------------------------------------------- encode / decode

    def _quantize(self, z_e: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(M, N, D)`` encoder outputs → quantized ``(M, N, D)``, codes ``(M, N)``, commitment loss.

        Runs in float32 even under autocast (distances and EMA statistics need it).
        """
        with torch.autocast(device_type=z_e.device.type, enabled=False):
            z_q, codes, commitment = self.quantizer(z_e.float())
        return z_q, codes, commitment

    def _check_input(self, frames: Tensor) -> None:
        check_frames(frames)
        if frames.shape[2] != self.in_channels:
            raise ValueError(f"vqvae was built for {self.in_channels}-channel frames; got frames of shape "
                             f"{tuple(frames.shape)} (B, T, C, H, W)")

    def _encode_frames(self, frames: Tensor) -> tuple[Tensor, Tensor, Tensor, tuple[int, int]]:
        self._check_input(frames)
        b = frames.shape[0]
        z_e = self.encoder(rearrange(frames, "b t c h w -> (b t) c h w"))
        grid = (z_e.shape[-2], z_e.shape[-1])
        z_e = rearrange(z_e, "bt d h w -> bt (h w) d")
        z_q, codes, commitment = self._quantize(z_e)
        z_q = rearrange(z_q, "(b t) n d -> b t n d", b=b)
        codes = rearrange(codes, "(b t) n -> b t n", b=b)
        return z_q, codes, commitment, grid

    def encode(self, frames: Tensor) -> Latents:
        """Frames ``(B, T, C, H, W)`` in [0, 1] → quantized latents ``(B, T, N, D)`` and codes ``(B, T, N)``.

        In training mode this is the quantizer's own forward pass (EMA updates included; its distances
        and one-hot assignments are ``(M·N, K)`` tensors); in eval mode (the frozen backbone of stage 2,
        caching and evaluation) the nearest codes are found by a chunked matmul, :meth:`nearest_codes`,
        which gives the same codes several times faster, in at most ``max_search_bytes`` of temporaries.
        """
        if self.training:
            z_q, codes, _, _ = self._encode_frames(frames)
            return Latents(latents=z_q, codes=codes)
        self._check_input(frames)
        b, t = frames.shape[:2]
        z_e = self.encoder(rearrange(frames, "b t c h w -> (b t) c h w"))
        codes = self.nearest_codes(rearrange(z_e, "(b t) d h w -> b t (h w) d", b=b, t=t))
        return Latents(latents=F.embedding(codes, self.codebook), codes=codes)

    @torch.no_grad()
    def nearest_codes(self, latents: Tensor, max_bytes: int | None = None) -> Tensor:
        """Latents ``(..., D)`` → int64 codes ``(...)`` of the nearest codebook vectors (L2).

        ``argmin_k ‖x − e_k‖² = argmax_k (2 x·e_k − ‖e_k‖²)``, in float32, one matmul into a reused
        ``(rows, cols)`` score buffer at a time, sized to ``max_bytes`` (default ``max_search_bytes``)
        and at most :data:`SEARCH_BLOCK_BYTES` (cache-sized blocks are faster than one big one):
        ``rows = min(max_bytes, SEARCH_BLOCK_BYTES) / (4 K)`` latents against the whole codebook, or, when one row of ``K`` scores
        does not fit, one latent against ``max_bytes / 4`` codes at a time (ties: the first code, as
        ``argmax``). Peak memory is flat in K beyond the codebook itself; the codes are the unchunked ones.
        """
        budget = self.max_search_bytes if max_bytes is None else int(max_bytes)
        codebook = self.codebook.float()  # (K, D)
        num_codes = codebook.shape[0]
        sq_norms = torch.linalg.vector_norm(codebook, dim=-1).square()  # (K,)
        flat = latents.reshape(-1, latents.shape[-1]).float()  # (M, D)
        codes = torch.empty(flat.shape[0], dtype=torch.int64, device=flat.device)
        rows = search_block_rows(flat.shape[0], num_codes, budget)
        cols = num_codes if budget >= 4 * num_codes else max(1, budget // 4)
        scores = flat.new_empty(rows, cols)
        for start in range(0, flat.shape[0], rows):
            x = flat[start:start + rows]  # (r, D)
            if cols == num_codes:
                out = scores[:x.shape[0]]
                torch.addmm(sq_norms, x, codebook.t(), beta=-1, alpha=2, out=out)
                codes[start:start + x.shape[0]] = out.argmax(-1)
                continue
            best = x.new_full((x.shape[0],), float("-inf"))
            for k in range(0, num_codes, cols):  # one latent (rows == 1), the codebook in blocks
                out = scores[:, :min(cols, num_codes - k)]
                torch.addmm(sq_norms[k:k + cols], x, codebook[k:k + cols].t(), beta=-1, alpha=2, out=out)
                value, index = out.max(-1)
                better = value > best  # strictly: a tie keeps the earlier code
                best = torch.where(better, value, best)
                codes[start:start + x.shape[0]] = torch.where(better, index + k, codes[start:start + x.shape[0]])
        return codes.view(latents.shape[:-1])

    def embed_codes(self, codes: Tensor) -> Tensor:
        """Codes ``(..., N)`` int64 → codebook vectors ``(..., N, D)``."""
        if codes.min() < 0 or codes.max() >= self.codebook_size:
            raise ValueError(f"codes must lie in [0, {self.codebook_size}); got range "
                             f"[{int(codes.min())}, {int(codes.max())}]")
        return F.embedding(codes, self.codebook)

    def snap(self, latents: Tensor) -> Tensor:
        """Continuous latents ``(B, T, N, D)`` → codes ``(B, T, N)`` of the nearest codebook vectors."""
        return self.nearest_codes(latents)

    def decode(self, z: Latents) -> Tensor:
        """Latents → frames ``(B, T, C, H, W)`` in [0, 1].

        Uses ``z.codes`` when present; otherwise continuous ``z.latents (B, T, N, D)`` are
        first snapped to their nearest codebook vectors, so the frozen decoder only ever
        sees inputs it was trained on.
        """
        codes = z.codes if z.codes is not None else self.snap(z.latents)
        return self._decode_vectors(self.embed_codes(codes))

    def decode_latents(self, latents: Tensor) -> Tensor:
        """Continuous latents ``(B, T, N, D)`` → frames ``(B, T, C, H, W)`` (not clamped), differentiable.

        The forward pass decodes the nearest codebook vectors, exactly like :meth:`decode`; the
        backward pass copies the gradient straight through the snap to ``latents`` (the
        straight-through estimator of van den Oord et al. 2017, arXiv:1711.00937).

        Raises:
            ValueError: ``N`` is not a square grid.
        """
        snapped = F.embedding(self.nearest_codes(latents), self.codebook).to(latents.dtype)
        return self._decode_vectors(latents + (snapped - latents).detach())

    def _decode_vectors(self, vectors: Tensor) -> Tensor:
        """Vectors ``(B, T, N, D)`` on a square ``N = h * w`` grid → frames ``(B, T, C, H, W)``, not clamped."""
        b, t, n, _ = vectors.shape
        side = int(round(n ** 0.5))
        if side * side != n:
            raise ValueError(f"vqvae decodes square token grids; got N={n} tokens per frame")
        frames = self.decoder(rearrange(vectors, "b t (h w) d -> (b t) d h w", h=side))
        return rearrange(frames, "(b t) c h w -> b t c h w", b=b)

    # ---------------------------------------------------------------- training

    def last_decoder_layer(self) -> Tensor:
        """The weight of the decoder's final transposed conv (the adaptive GAN weight's reference)."""
        return self.decoder.net[-1].weight

    def forward(self, frames: Tensor, return_reconstruction: bool = False) -> dict[str, Tensor]:
        """Stage-1 step on frames ``(B, T, C, H, W)``.

        Returns ``loss`` (L1 reconstruction + commitment), ``recon_l1``, ``commitment``,
        ``psnr`` (dB, on this batch), ``codebook_usage`` (fraction of the K codes used in
        this batch) and ``perplexity`` (exp of the code-distribution entropy, at most K); with
        ``return_reconstruction`` also ``reconstruction``, the decoded frames ``(B, T, C, H, W)``
        (sigmoid outputs, differentiable), for the GAN step (:meth:`Backbone.forward`).
        """
        z_q, codes, commitment, grid = self._encode_frames(frames)
        recon = self.decoder(rearrange(z_q, "b t (h w) d -> (b t) d h w", h=grid[0]))
        target = rearrange(frames, "b t c h w -> (b t) c h w")
        recon_l1 = F.l1_loss(recon, target)
        with torch.no_grad():
            mse = F.mse_loss(recon.float(), target.float())
            counts = torch.bincount(codes.flatten(), minlength=self.codebook_size).float()
            probs = counts / counts.sum()
            entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum()
        out = {
            "loss": recon_l1 + commitment.sum(),
            "recon_l1": recon_l1.detach(),
            "commitment": commitment.sum().detach(),
            "psnr": (10 * torch.log10(1.0 / mse.clamp_min(1e-10))),
            "codebook_usage": (counts > 0).float().mean(),
            "perplexity": entropy.exp(),
        }
        if return_reconstruction:
            out["reconstruction"] = rearrange(recon, "(b t) c h w -> b t c h w", b=frames.shape[0])
        return out
