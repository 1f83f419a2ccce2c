"""Dual-path knowledge distillation losses (DPKD, SPEC §2, paper eq. 1-2).

Student features are token sequences ``(B, N, d_s)`` on a grid ``g`` (``N = prod(g)``, row-major,
torch order ``(H, W)`` / ``(D, H, W)``); teacher features are channel-first maps ``(B, C, *g_t)`` or
token sequences on their own grid. Teacher features are resampled to the student grid by area
interpolation (``adaptive_avg_pool``; **ours**) and the student's features are projected to the
teacher's width by a :class:`Projector` (Linear-GELU-Linear; training-only).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Projector",
    "grid_to_tokens",
    "resample_to_grid",
    "resample_tokens",
    "semantic_distill_loss",
    "tokens_to_grid",
    "visual_distill_loss",
]


class Projector(nn.Module):
    """FFN projector ``Linear(d_in, h) -> GELU -> Linear(h, d_out)`` on the last axis.

    ``hidden`` defaults to ``d_out``. Input ``(..., d_in)`` -> ``(..., d_out)``.
    """

    def __init__(self, d_in: int, d_out: int, hidden: int | None = None) -> None:
        super().__init__()
        h = hidden or d_out
        self.net = nn.Sequential(nn.Linear(d_in, h), nn.GELU(), nn.Linear(h, d_out))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def tokens_to_grid(tokens: Tensor, grid: Sequence[int]) -> Tensor:
    """``(B, N, C)`` row-major tokens -> ``(B, C, *grid)``; ``N`` must equal ``prod(grid)``."""
    b, n, c = tokens.shape
    grid = tuple(int(g) for g in grid)
    if n != math.prod(grid):
        raise ValueError(f"{n} tokens do not fill a grid {grid}")
    return tokens.transpose(1, 2).reshape(b, c, *grid)


def grid_to_tokens(features: Tensor) -> Tensor:
    """``(B, C, *g)`` -> ``(B, prod(g), C)`` (row-major)."""
    return features.flatten(2).transpose(1, 2)


def resample_to_grid(features: Tensor, grid: Sequence[int], src_grid: Sequence[int] | None = None) -> Tensor:
    """Area-resample a feature map to ``grid`` (2D or 3D).

    Args:
        features: ``(B, C, *g)`` map, or ``(B, N, C)`` tokens when ``src_grid`` (their grid) is given.
        grid: target spatial size (``len(grid)`` = 2 or 3).
    Returns:
        ``(B, C, *grid)``. Downsampling averages exactly the covered cells (``adaptive_avg_pool``,
        i.e. ``F.interpolate(mode="area")``); upsampling with it replicates cells (nearest-like).
    """
    if src_grid is not None:
        features = tokens_to_grid(features, src_grid)
    grid = tuple(int(g) for g in grid)
    if len(grid) != features.ndim - 2:
        raise ValueError(f"grid {grid} does not match features of shape {tuple(features.shape)}")
    if tuple(features.shape[2:]) == grid:
        return features
    pool = {2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}[len(grid)]
    return pool(features, grid)


def resample_tokens(features: Tensor, grid: Sequence[int], src_grid: Sequence[int] | None = None) -> Tensor:
    """:func:`resample_to_grid` returning tokens ``(B, prod(grid), C)``."""
    return grid_to_tokens(resample_to_grid(features, grid, src_grid))


def visual_distill_loss(
    student_tokens: Sequence[Tensor],
    teacher_feats: Sequence[Tensor],
    projectors: Sequence[nn.Module],
    grid: Sequence[int],
) -> Tensor:
    """Visual-path DPKD loss (eq. 1): ``(1/|P|) sum_pairs mean((phi_i(F_stu^i) - F_G^j)^2)``.

    Args:
        student_tokens: per pair, ``(B, N, d_s)`` student ViT tokens on ``grid``.
        teacher_feats: per pair, ``(B, C_j, *g_j)`` teacher features (detached, cast to the
            student's dtype, area-resampled to ``grid``).
        projectors: per pair, a module ``(B, N, d_s) -> (B, N, C_j)`` (``nn.Identity`` if equal widths).
        grid: the student token grid.
    Returns:
        scalar (mean over tokens and channels, then over pairs).
    """
    if not (len(student_tokens) == len(teacher_feats) == len(projectors)) or not student_tokens:
        raise ValueError(
            f"need one student layer, teacher feature and projector per pair; got "
            f"{len(student_tokens)}, {len(teacher_feats)}, {len(projectors)}"
        )
    losses = []
    for s, t, proj in zip(student_tokens, teacher_feats, projectors):
        target = resample_tokens(t.detach().to(s.dtype), grid)
        losses.append(F.mse_loss(proj(s), target))
    return torch.stack(losses).mean()


def semantic_distill_loss(
    student_last: Tensor,
    fused: Tensor,
    fused_grid: Sequence[int],
    projector: nn.Module,
    grid: Sequence[int],
) -> Tensor:
    """Semantic-path DPKD loss (eq. 2): ``mean((phi_sem(F_stu^4) - F_G^fuse)^2)``.

    Args:
        student_last: ``(B, N, d_s)`` the student's last ViT layer on ``grid``.
        fused: ``(B, M, d_t)`` the teacher's prompt-fused image tokens on ``fused_grid``.
        projector: ``(B, N, d_s) -> (B, N, d_t)``.
    Returns:
        scalar.
    """
    target = resample_tokens(fused.detach().to(student_last.dtype), grid, src_grid=fused_grid)
    return F.mse_loss(projector(student_last), target)
