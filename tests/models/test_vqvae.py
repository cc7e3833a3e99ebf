"""VQ-VAE backbone: shapes, the EMA codebook really updates, and it overfits one batch."""

from __future__ import annotations

import pytest
import torch

from futurelat.models.backbones.vqvae import VQVAE
from futurelat.models.base import Latents


def tiny_vqvae(**kw) -> VQVAE:
    torch.manual_seed(0)
    return VQVAE(in_channels=1, hidden_channels=8, channel_mult=[1, 2], num_res_blocks=1,
                 latent_dim=8, codebook_size=32, **kw)


def blobs(b: int = 4, t: int = 2, size: int = 16) -> torch.Tensor:
    """Bright squares at different places on black: (b, t, 1, size, size) in [0, 1]."""
    g = torch.Generator().manual_seed(1)
    frames = torch.zeros(b, t, 1, size, size)
    for i in range(b):
        for j in range(t):
            y, x = torch.randint(0, size - 6, (2,), generator=g).tolist()
            frames[i, j, 0, y:y + 6, x:x + 6] = 1.0
    return frames


def test_shapes_and_latent_spec():
    model = tiny_vqvae()
    spec = model.latent_spec((16, 16))
    assert spec.grid == (4, 4) and spec.tokens_per_frame == 16 and spec.codebook_size == 32
    z = model.encode(blobs())
    assert z.latents.shape == (4, 2, 16, 8) and z.codes.shape == (4, 2, 16) and z.codes.dtype == torch.int64
    assert model.decode(z).shape == (4, 2, 1, 16, 16)


def test_errors_name_the_shape():
    model = tiny_vqvae()
    with pytest.raises(ValueError, match="18x18 is not divisible"):
        model.latent_spec((18, 18))
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        model.encode(torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match="1-channel"):
        model.encode(torch.rand(1, 1, 3, 16, 16))


def test_snapped_latents_decode_like_their_codes():
    model = tiny_vqvae().eval()
    z = model.encode(blobs())
    assert torch.equal(model.snap(z.latents), z.codes)
    assert torch.allclose(model.decode(Latents(z.latents)), model.decode(z))


def test_eval_encode_matches_the_quantizer():
    model = tiny_vqvae(kmeans_init=False)
    frames = blobs(b=6, t=3)
    model.train()
    model.quantizer.eval()  # the quantizer's own lookup, without its EMA update
    z_q, codes, _, _ = model._encode_frames(frames)
    z = model.eval().encode(frames)
    assert torch.equal(z.codes, codes)
    assert torch.allclose(z.latents, z_q, atol=1e-6)


def test_overfits_one_batch_and_the_codebook_updates():
    model = tiny_vqvae(kmeans_init=False, dead_code_threshold=0.0)
    frames = blobs()
    codebook_before = model.codebook.clone()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        out = model(frames)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = first if first is not None else out["recon_l1"].item()
    assert out["recon_l1"].item() < 0.3 * first
    assert out["psnr"].item() > 18.0
    # EMA codebook: no gradient, yet it moves towards the encoder outputs.
    assert model.codebook.grad is None
    assert (model.codebook - codebook_before).norm() > 1e-2 * codebook_before.norm()
    assert 0 < out["codebook_usage"].item() <= 1 and 1 <= out["perplexity"].item() <= 32


@pytest.mark.parametrize("max_bytes", [4, 4 * 7, 4 * 32, 4 * 32 * 5 + 3, 2**29])
def test_nearest_codes_in_a_byte_budget_are_the_unchunked_search(max_bytes):
    """Chunks of rows (whole codebook) or, below one row, of codes: the same codes at any budget, ties
    (a duplicated code) going to the first code as argmax does."""
    model = tiny_vqvae(kmeans_init=False).eval()
    with torch.no_grad():
        model.codebook[20] = model.codebook[3]  # a tie: code 3 wins
    torch.manual_seed(3)
    latents = torch.randn(3, 5, 16, 8)
    latents[0, 0, :4] = model.codebook[3]
    codebook = model.codebook.float()
    flat = latents.reshape(-1, 8)
    unchunked = (2 * flat @ codebook.t() - codebook.square().sum(-1)).argmax(-1).view(3, 5, 16)
    codes = model.nearest_codes(latents, max_bytes=max_bytes)
    assert torch.equal(codes, unchunked) and (codes[0, 0, :4] == 3).all()
    assert torch.equal(codes, torch.cdist(flat, codebook).argmin(-1).view(3, 5, 16))


def test_the_search_budget_comes_from_the_config():
    assert tiny_vqvae().max_search_bytes == 512 * 2**20
    assert tiny_vqvae(max_search_bytes=1024).max_search_bytes == 1024
    with pytest.raises(ValueError, match="max_search_bytes must be >= 4"):
        tiny_vqvae(max_search_bytes=0)
