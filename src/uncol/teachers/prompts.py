"""Synthetic prompts for the frozen teacher from a (ground-truth or pseudo-label) mask (SPEC §5).

2D boxes: the bounding box of each foreground class, each side moved OUTWARD by an independent
uniform random offset in ``[0, jitter_px]`` pixels of MedSAM's 1024-px input frame (MedSAM's training
jitter, ``bbox_shift = 20``), scaled to the image: ``jitter_px * W / 1024`` in x and
``jitter_px * H / 1024`` in y (~2 % of the side at 20 px), then clipped to the image. ``jitter_px = 0``
gives the tight box. ``outward=False`` moves each side inward or outward (±) instead.

3D (or 2D) points: ``num_pos`` positive points sampled uniformly inside the class (inside its
low-entropy part when an entropy map is given: entropy below ``entropy_threshold``, falling back to the
class's lowest-entropy voxels when none is), and ``num_neg`` negative points sampled outside the class
inside its bounding box grown by ``NEG_MARGIN`` voxels (anywhere outside when that is empty).

A class absent from the mask gets no prompt (and so background probability in the teacher's output).
Every random draw comes from the ``torch.Generator`` passed in: same seed, same prompts.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from uncol.teachers.base import Box, ClassPrompts, PointPrompt

MEDSAM_FRAME = 1024.0


NEG_MARGIN = 5  # voxels around a class's bounding box where its negative points are drawn (ours)


def _as_tensor(mask: Tensor | np.ndarray) -> Tensor:
    return mask if isinstance(mask, Tensor) else torch.from_numpy(np.asarray(mask))


def box_from_mask(
    mask: Tensor | np.ndarray, jitter_px: float = 0.0, generator: torch.Generator | None = None,
    outward: bool = True,
) -> Box | None:
    """Box ``(x0, y0, x1, y1)`` (inclusive pixel indices, floats) of a 2D boolean ``mask (H, W)``; None if empty."""
    m = _as_tensor(mask).bool()
    if m.dim() != 2:
        raise ValueError(f"box_from_mask takes a 2D mask (H, W), got shape {tuple(m.shape)}")
    ys, xs = torch.nonzero(m, as_tuple=True)
    if ys.numel() == 0:
        return None
    h, w = m.shape
    box = torch.tensor([xs.min(), ys.min(), xs.max(), ys.max()], dtype=torch.float64)
    if jitter_px > 0:
        scale = torch.tensor([w, h, w, h], dtype=torch.float64) * (jitter_px / MEDSAM_FRAME)
        u = torch.rand(4, generator=generator, dtype=torch.float64)
        u = u if outward else 2.0 * u - 1.0
        box = box + torch.tensor([-1.0, -1.0, 1.0, 1.0], dtype=torch.float64) * u * scale
    lo = torch.zeros(4, dtype=torch.float64)
    hi = torch.tensor([w - 1, h - 1, w - 1, h - 1], dtype=torch.float64)
    box = torch.minimum(torch.maximum(box, lo), hi)
    return (float(box[0]), float(box[1]), float(box[2]), float(box[3]))


def boxes_from_mask(
    label: Tensor | np.ndarray, num_classes: int, jitter_px: float = 0.0,
    generator: torch.Generator | None = None, outward: bool = True,
) -> ClassPrompts:
    """One box per foreground class present in a 2D label map ``(H, W)`` (values in [0, K))."""
    lab = _as_tensor(label)
    boxes = {}
    for c in range(1, num_classes):
        box = box_from_mask(lab == c, jitter_px, generator, outward)
        if box is not None:
            boxes[c] = box
    return ClassPrompts(boxes=boxes)


def _sample(cand: Tensor, n: int, generator: torch.Generator | None) -> Tensor:
    """``n`` index rows ``(n, ndim)`` drawn uniformly (with replacement only when too few) from a bool map."""
    idx = torch.nonzero(cand)
    if idx.shape[0] == 0 or n <= 0:
        return idx[:0].float()
    replace = idx.shape[0] < n
    pick = (torch.randint(idx.shape[0], (n,), generator=generator) if replace
            else torch.randperm(idx.shape[0], generator=generator)[:n])
    return idx[pick].float()


def points_from_mask(
    label: Tensor | np.ndarray, num_classes: int, num_pos: int = 1, num_neg: int = 0,
    generator: torch.Generator | None = None, entropy: Tensor | None = None,
    entropy_threshold: float | None = None,
) -> ClassPrompts:
    """Positive/negative points per foreground class of a label map ``(*S)`` (2D or 3D).

    ``entropy (*S)``: restrict positives to voxels with entropy < ``entropy_threshold`` (default: the
    class's median entropy). Coordinates are ``(P, ndim)`` floats in torch axis order.
    """
    lab = _as_tensor(label)
    ent = None if entropy is None else _as_tensor(entropy).float()
    points: dict[int, PointPrompt] = {}
    for c in range(1, num_classes):
        inside = lab == c
        if not bool(inside.any()):
            continue
        cand = inside
        if ent is not None:
            thr = float(ent[inside].median()) if entropy_threshold is None else entropy_threshold
            low = inside & (ent < thr)
            cand = low if bool(low.any()) else inside & (ent <= ent[inside].min())
        pos = _sample(cand, num_pos, generator)
        outside = ~inside
        nz = torch.nonzero(inside)
        region = torch.zeros_like(inside)
        lo = (nz.min(0).values - NEG_MARGIN).clamp_min(0)
        hi = nz.max(0).values + NEG_MARGIN + 1
        region[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))] = True
        near = outside & region
        neg = _sample(near if bool(near.any()) else outside, num_neg, generator)
        labels = torch.cat([torch.ones(len(pos), dtype=torch.long), torch.zeros(len(neg), dtype=torch.long)])
        points[c] = PointPrompt(torch.cat([pos, neg]), labels)
    return ClassPrompts(points=points)


def slice_boxes_from_mask(
    label: Tensor | np.ndarray, num_classes: int, jitter_px: float = 0.0,
    generator: torch.Generator | None = None, outward: bool = True,
) -> ClassPrompts:
    """Per-slice boxes of a 3D label map ``(D, H, W)`` along D, for slice-wise teachers (``.slices``)."""
    lab = _as_tensor(label)
    if lab.dim() != 3:
        raise ValueError(f"slice_boxes_from_mask takes a 3D label map (D, H, W), got shape {tuple(lab.shape)}")
    return ClassPrompts(slices=[boxes_from_mask(s, num_classes, jitter_px, generator, outward) for s in lab])


PromptBuilder = Callable[..., ClassPrompts]
_KINDS: dict[str, PromptBuilder] = {
    "box": lambda lab, k, o: boxes_from_mask(lab, k, o["jitter_px"], o["generator"], o["outward"]),
    "slice_boxes": lambda lab, k, o: slice_boxes_from_mask(lab, k, o["jitter_px"], o["generator"], o["outward"]),
    "points": lambda lab, k, o: points_from_mask(
        lab, k, o["num_pos"], o["num_neg"], o["generator"], o["entropy"], o["entropy_threshold"]
    ),
}


def make_prompts(
    labels: Tensor, num_classes: int, kind: str, *, jitter_px: float = 0.0,
    generator: torch.Generator | None = None, outward: bool = True, entropy: Tensor | None = None,
    entropy_threshold: float | None = None, num_pos: int = 1, num_neg: int = 0,
) -> list[ClassPrompts]:
    """Prompts for a batch ``labels (B, *S)`` in the form ``kind`` = the teacher's ``prompt_kind``.

    ``entropy (B, *S)`` is used by ``points`` only. One :class:`ClassPrompts` per image.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown prompt kind {kind!r}; known: {', '.join(sorted(_KINDS))}")
    out = []
    for b in range(labels.shape[0]):
        opts = {"jitter_px": jitter_px, "generator": generator, "outward": outward, "num_pos": num_pos,
                "num_neg": num_neg, "entropy": None if entropy is None else entropy[b].cpu(),
                "entropy_threshold": entropy_threshold}
        out.append(_KINDS[kind](labels[b].cpu(), num_classes, opts))
    return out


def prompts_from_masks(
    masks: Tensor, num_classes: int, kind: str | None = None, spatial_dims: int | None = None,
    **kwargs: Any,
) -> list[ClassPrompts]:
    """:func:`make_prompts` with ``kind`` defaulting from ``spatial_dims`` (2 -> box, 3 -> points).

    Pass ``kind=teacher.prompt_kind`` where the teacher is known (a slice-wise teacher needs
    ``slice_boxes`` for 3D masks).
    """
    if kind is None:
        kind = {2: "box", 3: "points"}.get(spatial_dims if spatial_dims is not None else masks.dim() - 1, "box")
    return make_prompts(masks, num_classes, kind, **kwargs)
