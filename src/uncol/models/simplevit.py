"""SimpleViT (Beyer et al. 2022, "Better plain ViT baselines"; lucidrains' ``simple_vit``) for 2D and 3D.

Patch embedding (patchify, LayerNorm(patch_dim), Linear(patch_dim, dim), LayerNorm(dim)), fixed
sin-cos position embedding, ``depth`` pre-norm layers (attention with ``heads`` x ``dim_head``
and bias-free qkv/out projections; MLP Linear-GELU-Linear), a final LayerNorm, no class token.
This is the layout of the UnCoL authors' ``simple2dvit.py`` / ``simple3dvit.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from uncol.models import blocks


def posemb_sincos(grid: tuple[int, ...], dim: int, temperature: float = 10000.0) -> Tensor:
    """Fixed sin-cos position embedding ``(prod(grid), dim)`` for a token grid of any rank.

    Each axis gets ``dim // (2 * len(grid))`` frequencies (sin and cos); axes are concatenated
    last-axis first (x, y[, z], as lucidrains), zero-padded to ``dim``. Tokens are in row-major grid order.
    """
    n_axes = len(grid)
    fourier = dim // (2 * n_axes)
    if fourier < 2:
        raise ValueError(f"ViT width {dim} is too small for a {n_axes}-D sin-cos embedding")
    omega = 1.0 / temperature ** (torch.arange(fourier, dtype=torch.float64) / (fourier - 1))
    coords = torch.meshgrid(*[torch.arange(g, dtype=torch.float64) for g in grid], indexing="ij")
    parts = []
    for c in reversed(coords):
        angle = c.flatten()[:, None] * omega[None, :]
        parts += [angle.sin(), angle.cos()]
    pe = torch.cat(parts, dim=1)
    return F.pad(pe, (0, dim - pe.shape[1])).float()


def patchify(x: Tensor, patch: int) -> tuple[Tensor, tuple[int, ...]]:
    """``(B, C, *S) -> (B, N, patch**d * C)`` tokens in row-major grid order, and the grid ``S // patch``."""
    b, c, *spatial = x.shape
    blocks.check_divisible(tuple(spatial), patch, "SimpleViT")
    grid = tuple(s // patch for s in spatial)
    d = len(spatial)
    shape = [b, c]
    for g in grid:
        shape += [g, patch]
    x = x.reshape(shape)
    # (B, C, g1, p1, g2, p2, ...) -> (B, g1, g2, ..., p1, p2, ..., C)
    perm = [0] + [2 + 2 * i for i in range(d)] + [3 + 2 * i for i in range(d)] + [1]
    return x.permute(perm).reshape(b, math.prod(grid), -1), grid


class Attention(nn.Module):
    """Pre-norm multi-head self-attention: ``(B, N, dim) -> (B, N, dim)``."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.to_out = nn.Linear(heads * dim_head, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        q, k, v = self.to_qkv(self.norm(x)).view(b, n, 3, self.heads, self.dim_head).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # scale dim_head ** -0.5
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class FeedForward(nn.Sequential):
    """Pre-norm MLP: LayerNorm, Linear(dim, hidden), GELU, Linear(hidden, dim)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class SimpleViT(nn.Module):
    """``forward(x: (B, C, *S)) -> (tokens, grid)``: ``tokens`` is a list of ``depth`` tensors
    ``(B, N, dim)`` (each layer's output, residual stream, before the final norm), ``grid = S // patch``
    with ``N = prod(grid)``. ``norm`` is the final LayerNorm, applied by the caller to the last layer.
    The position embedding is computed for the input's grid, so any size divisible by ``patch`` works.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int = 1,
        patch_size: int = 16,
        dim: int = 128,
        depth: int = 4,
        heads: int = 4,
        dim_head: int = 64,
        mlp_dim: int = 256,
    ) -> None:
        super().__init__()
        self.spatial_dims, self.patch_size, self.dim, self.depth = spatial_dims, patch_size, dim, depth
        patch_dim = in_channels * patch_size**spatial_dims
        self.patch_embed = nn.Sequential(
            nn.LayerNorm(patch_dim), nn.Linear(patch_dim, dim), nn.LayerNorm(dim)
        )
        self.layers = nn.ModuleList(
            nn.ModuleList([Attention(dim, heads, dim_head), FeedForward(dim, mlp_dim)]) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self._pe: dict[tuple[int, ...], Tensor] = {}

    def position_embedding(self, grid: tuple[int, ...], like: Tensor) -> Tensor:
        if grid not in self._pe:
            self._pe[grid] = posemb_sincos(grid, self.dim)
        return self._pe[grid].to(device=like.device, dtype=like.dtype)

    def forward(self, x: Tensor) -> tuple[list[Tensor], tuple[int, ...]]:
        patches, grid = patchify(x, self.patch_size)
        h = self.patch_embed(patches)
        h = h + self.position_embedding(grid, h)
        out = []
        for attn, ff in self.layers:
            h = h + attn(h)
            h = h + ff(h)
            out.append(h)
        return out, grid
