"""Copy-paste masks and mixing for the two UnCoL stages (SPEC §4).

Masks are spatial only: ``(*S)`` (one mask for a whole batch, as BCP) or ``(B, *S)`` (one per image),
bool. :func:`mix` combines two batches with a mask: ``mix(a, b, mask) = a where mask else b``,
i.e. ``a * mask + b * (1 - mask)``, for images ``(B, C, *S)``, labels ``(B, *S)`` (any dtype) and
bool masks alike. Randomness comes only from the ``generator`` argument (CPU ``torch.Generator``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["bcp_mask", "grid_copy_paste_mask", "mix"]

Device = torch.device | str | None


def _edges(size: int, parts: int) -> list[int]:
    """``parts + 1`` integer cut points ``floor(i * size / parts)`` (equal patches when divisible)."""
    return [(i * size) // parts for i in range(parts + 1)]


def grid_copy_paste_mask(
    spatial: Sequence[int],
    grid: int | Sequence[int] = 4,
    ratio: float = 0.6,
    generator: torch.Generator | None = None,
    device: Device = None,
) -> Tensor:
    """Stage-1 copy-paste mask: a random ``ratio`` of the cells of a regular grid (SPEC §4).

    The image is cut into ``grid`` cells per axis (4x4 in 2D, 4x4x4 in 3D -- **ours**; cut points
    ``floor(i * size / grid)``, so cells are exactly ``size / grid`` when divisible) and
    ``round(ratio * n_cells)`` cells, drawn without replacement, are True (0.6 * 16 = 9.6 -> 10 cells
    = 62.5 % in 2D; 0.6 * 64 = 38.4 -> 38 cells = 59.4 % in 3D).

    True marks the pasted cells: ``mix(donor, base, mask)`` replaces those cells of ``base`` by the
    ``donor``'s; mix the labels with the same call.

    Args:
        spatial: ``(H, W)`` or ``(D, H, W)``.
        grid: cells per axis (int, or one per axis); each axis needs ``size >= grid``.
    Returns:
        ``(*spatial)`` bool.
    """
    spatial = tuple(int(s) for s in spatial)
    cells = (int(grid),) * len(spatial) if isinstance(grid, int) else tuple(int(g) for g in grid)
    if len(cells) != len(spatial) or any(g < 1 or g > s for g, s in zip(cells, spatial)):
        raise ValueError(f"grid {cells} does not fit the spatial size {spatial}")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    n = math.prod(cells)
    chosen = torch.randperm(n, generator=generator)[: round(ratio * n)]
    cell_mask = torch.zeros(n, dtype=torch.bool)
    cell_mask[chosen] = True
    cell_mask = cell_mask.view(cells)
    for axis, (size, g) in enumerate(zip(spatial, cells)):
        widths = torch.diff(torch.tensor(_edges(size, g)))
        cell_mask = cell_mask.repeat_interleave(widths, dim=axis)
    return cell_mask.to(device) if device is not None else cell_mask


def bcp_mask(
    spatial: Sequence[int],
    ratio: float = 2.0 / 3.0,
    generator: torch.Generator | None = None,
    device: Device = None,
) -> Tensor:
    """BCP's mask (Bai et al., CVPR 2023, ``generate_mask`` / ``context_mask``): False inside a block
    of ``int(ratio * size)`` voxels along each axis, True elsewhere.

    As BCP, the block sits at a random position inside the image; we draw its corner uniformly from all
    ``size - block + 1`` valid positions
    (BCP's ``np.random.randint(0, size - block)`` never touches the last row -- an off-by-one we do
    not copy). BCP then mixes ``X_in = X_L * mask + X_U * (1 - mask)``, i.e. ``mix(X_L, X_U, mask)``:
    the block comes from the *second* argument.

    Returns:
        ``(*spatial)`` bool, True outside the block.
    """
    spatial = tuple(int(s) for s in spatial)
    mask = torch.ones(spatial, dtype=torch.bool)
    index = []
    for size in spatial:
        block = int(size * ratio)
        start = int(torch.randint(0, size - block + 1, (1,), generator=generator))
        index.append(slice(start, start + block))
    mask[tuple(index)] = False
    return mask.to(device) if device is not None else mask


def half_slices(batch: int) -> tuple[slice, slice]:
    """Batch slices of the first and second half (``batch // 2`` each; the whole batch twice when ``batch == 1``):
    the streams' halves that BCP's code and the authors' UnCoL code mix with each other."""
    n = batch // 2
    return (slice(None), slice(None)) if n == 0 else (slice(0, n), slice(n, 2 * n))


def _align(mask: Tensor, a: Tensor, spatial_dims: int | None) -> Tensor:
    """Reshape ``mask`` ``(*S)`` / ``(B, *S)`` / ``a.shape`` so that it broadcasts against ``a``."""
    if spatial_dims is not None:
        s = a.shape[a.ndim - spatial_dims :]
        if mask.shape == a.shape or mask.shape == s:
            return mask
        if mask.ndim == spatial_dims + 1 and mask.shape[0] == a.shape[0] and mask.shape[1:] == s:
            return mask.view(mask.shape[0], *([1] * (a.ndim - mask.ndim)), *s)
        raise ValueError(f"mask {tuple(mask.shape)} fits neither (*S) nor (B, *S) of {tuple(a.shape)}")
    if mask.shape == a.shape:
        return mask
    shared = mask.ndim <= a.ndim and tuple(a.shape[a.ndim - mask.ndim :]) == tuple(mask.shape)
    per_image = (
        mask.ndim == a.ndim - 1 and mask.shape[0] == a.shape[0] and tuple(mask.shape[1:]) == tuple(a.shape[2:])
    )
    if shared and per_image and mask.shape[0] != 1:  # with a leading 1 both readings agree
        raise ValueError(f"mask {tuple(mask.shape)} is ambiguous for {tuple(a.shape)}; pass spatial_dims")
    if per_image:
        return mask.unsqueeze(1)
    if shared:
        return mask
    raise ValueError(f"mask {tuple(mask.shape)} fits neither (*S) nor (B, *S) of {tuple(a.shape)}")


def mix(a: Tensor, b: Tensor, mask: Tensor, spatial_dims: int | None = None) -> Tensor:
    """``a`` where ``mask`` else ``b`` (= ``a * mask + b * (1 - mask)`` for a binary mask).

    Args:
        a, b: same shape: images ``(B, C, *S)``, labels ``(B, *S)`` (int64), masks (bool), ...
        mask: ``(*S)``, ``(B, *S)`` or ``a.shape``; bool or 0/1-valued (nonzero = take ``a``).
        spatial_dims: 2 or 3 to remove the rare shape ambiguity (e.g. a ``(B, H, W)`` mask against a
            3D label batch with ``D == B``); inferred otherwise.
    Returns:
        a tensor of ``a``'s shape and dtype.
    """
    if a.shape != b.shape:
        raise ValueError(f"cannot mix tensors of shapes {tuple(a.shape)} and {tuple(b.shape)}")
    m = _align(mask.to(a.device), a, spatial_dims)
    return torch.where(m.bool() if m.dtype != torch.bool else m, a, b.to(a.dtype))
