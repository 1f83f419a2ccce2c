"""SAM-Med3D prompt encoder: points (positive/negative) and a low-resolution mask prompt.

Facts from the official ``prompt_encoder3D.py`` (names/shapes for a strict load; our own code):
- ``pe_layer.positional_encoding_gaussian_matrix``: a persistent buffer (3, embed_dim // 3) of random
  frequencies G; a point with coordinates u ∈ [0, 1]³ is encoded as
  ``[sin(2π(2u−1)G), cos(2π(2u−1)G), sin(2π(2u−1)G)]`` (embed_dim channels; the sine appears twice).
- Dense grid encoding: cell (i, j, k) of an (X, Y, Z) grid gets u = ((j+½)/X, (i+½)/Y, (k+½)/Z): the first
  coordinate follows the grid's *second* axis (official quirk, reproduced for weight compatibility).
- Points: coordinates in the 128³ input frame, in the order the official code produced them for training
  (``torch.argwhere`` on the (D, H, W) volume, i.e. torch axis order), shifted by ½ and divided by the
  input size; label 1 adds ``point_embeddings.1``, label 0 adds ``point_embeddings.0``, label −1 is a
  padding point (encoding zeroed, ``not_a_point_embed`` added). Without boxes one padding point is appended.
- ``mask_downscaling``: Conv3d(1, m/4, 2, s2) → LayerNorm3d → GELU → Conv3d(m/4, m, 2, s2) → LayerNorm3d →
  GELU → Conv3d(m, embed_dim, 1); the mask prompt is (B, 1, 4g, 4g, 4g). ``no_mask_embed`` when absent.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from uncol.teachers.sam3d.image_encoder3d import LayerNorm3d


class PositionEmbeddingRandom3D(nn.Module):
    """Random Fourier features of 3D coordinates (``positional_encoding_gaussian_matrix`` (3, F))."""

    def __init__(self, num_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(3, num_feats))

    def encode(self, unit: Tensor) -> Tensor:
        """(..., 3) coordinates in [0, 1] → (..., 3F)."""
        g = self.positional_encoding_gaussian_matrix
        ang = 2 * math.pi * ((2 * unit.to(g.dtype) - 1) @ g)
        s = torch.sin(ang)
        return torch.cat([s, torch.cos(ang), s], dim=-1)

    def dense(self, size: tuple[int, int, int]) -> Tensor:
        """Encoding of a (X, Y, Z) grid of cell centres → (3F, X, Y, Z) (axis convention: module doc)."""
        x, y, z = size
        dev = self.positional_encoding_gaussian_matrix.device
        a0 = (torch.arange(x, device=dev, dtype=torch.float32) + 0.5) / y
        a1 = (torch.arange(y, device=dev, dtype=torch.float32) + 0.5) / x
        a2 = (torch.arange(z, device=dev, dtype=torch.float32) + 0.5) / z
        g0, g1, g2 = torch.meshgrid(a0, a1, a2, indexing="ij")
        return self.encode(torch.stack([g1, g0, g2], dim=-1)).permute(3, 0, 1, 2)

    def points(self, coords: Tensor, image_size: tuple[int, int, int]) -> Tensor:
        """(B, N, 3) coordinates in the input frame (already shifted to voxel centres) → (B, N, 3F)."""
        scale = torch.tensor(image_size, device=coords.device, dtype=torch.float32)
        return self.encode(coords.float() / scale)


class PromptEncoder3D(nn.Module):
    """Sparse (points) and dense (mask) prompt embeddings for :class:`MaskDecoder3D`."""

    def __init__(self, embed_dim: int = 384, image_embedding_size: tuple[int, int, int] = (8, 8, 8),
                 input_image_size: tuple[int, int, int] = (128, 128, 128), mask_in_chans: int = 16) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = tuple(image_embedding_size)
        self.input_image_size = tuple(input_image_size)
        self.pe_layer = PositionEmbeddingRandom3D(embed_dim // 3)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(2))  # 0 neg, 1 pos
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = tuple(4 * s for s in self.image_embedding_size)
        q = mask_in_chans // 4
        self.mask_downscaling = nn.Sequential(
            nn.Conv3d(1, q, kernel_size=2, stride=2),
            LayerNorm3d(q),
            nn.GELU(),
            nn.Conv3d(q, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm3d(mask_in_chans),
            nn.GELU(),
            nn.Conv3d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> Tensor:
        """(1, embed_dim, g, g, g) positional encoding of the image-embedding grid."""
        return self.pe_layer.dense(self.image_embedding_size).unsqueeze(0)  # type: ignore[arg-type]

    def embed_points(self, coords: Tensor, labels: Tensor) -> Tensor:
        """coords (B, N, 3) voxel indices in the input frame, labels (B, N) in {1, 0, −1} → (B, N+1, embed_dim)."""
        b, dev = coords.shape[0], coords.device
        coords = torch.cat([coords.float() + 0.5, torch.zeros(b, 1, 3, device=dev)], dim=1)
        labels = torch.cat([labels.to(dev).long(), torch.full((b, 1), -1, device=dev, dtype=torch.long)], 1)
        emb = self.pe_layer.points(coords, self.input_image_size)  # type: ignore[arg-type]
        lab = labels[..., None]
        emb = torch.where(lab == -1, torch.zeros_like(emb), emb)
        emb = emb + (lab == -1) * self.not_a_point_embed.weight
        emb = emb + (lab == 0) * self.point_embeddings[0].weight
        emb = emb + (lab == 1) * self.point_embeddings[1].weight
        return emb

    def forward(self, points: tuple[Tensor, Tensor] | None, masks: Tensor | None,
                batch: int = 1) -> tuple[Tensor, Tensor]:
        """Returns sparse (B, N, embed_dim) (N = 0 without points) and dense (B, embed_dim, g, g, g) embeddings."""
        if points is not None:
            batch = points[0].shape[0]
        elif masks is not None:
            batch = masks.shape[0]
        dev = self.no_mask_embed.weight.device
        if points is not None:
            sparse = self.embed_points(points[0].to(dev), points[1].to(dev))
        else:
            sparse = torch.empty(batch, 0, self.embed_dim, device=dev)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1, 1).expand(batch, -1, *self.image_embedding_size)
        return sparse, dense
