"""Non-overlapping square patches of a latent token grid, and the inverse.

Shape notation: ``N = h * w`` latent tokens per frame on an ``(h, w)`` grid, ``D`` channels,
``p`` patch side, ``M = N / p**2`` patches per frame. Tokens are in raster order.
"""

from __future__ import annotations

from torch import Tensor


def check_patch_size(patch_size: int, grid: tuple[int, int], key: str = "head.params.patch_size") -> None:
    """Raise ``ValueError`` naming ``key`` unless ``patch_size >= 1`` divides both sides of ``grid``."""
    if patch_size < 1 or grid[0] % patch_size or grid[1] % patch_size:
        raise ValueError(f"{key}={patch_size} must be >= 1 and divide the latent grid {tuple(grid)}")


def patchify(latents: Tensor, grid: tuple[int, int], patch_size: int) -> Tensor:
    """``(..., N, D)`` → ``(..., M, p*p*D)``: non-overlapping ``p x p`` patches in raster order.

    Inside a patch the vectors are ordered (row, column) and concatenated.
    """
    (h, w), p = grid, patch_size
    *lead, n, d = latents.shape
    x = latents.reshape(*lead, h // p, p, w // p, p, d).transpose(-4, -3)  # (..., h/p, w/p, p, p, D)
    return x.reshape(*lead, (h // p) * (w // p), p * p * d)


def unpatchify(tokens: Tensor, grid: tuple[int, int], patch_size: int) -> Tensor:
    """Inverse of :func:`patchify`: ``(..., M, p*p*D)`` → ``(..., N, D)``."""
    (h, w), p = grid, patch_size
    *lead, m, pd = tokens.shape
    d = pd // (p * p)
    x = tokens.reshape(*lead, h // p, w // p, p, p, d).transpose(-4, -3)  # (..., h/p, p, w/p, p, D)
    return x.reshape(*lead, h * w, d)
