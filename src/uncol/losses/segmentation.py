"""Supervised segmentation losses with an optional supervision mask (ground truth or pseudo-labels).

Conventions: ``logits`` ``(B, K, *S)``; ``target`` ``(B, *S)`` int64 in ``[0, K)``; ``mask``
``(B, *S)`` (bool or float in ``[0, 1]``), ``None`` = everywhere. Voxels outside the mask do not
influence the value or the gradient (their target may be anything in ``[0, K)``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ce_loss", "dice_loss", "mix_loss", "sup_loss"]


def _mask(mask: Tensor | None, target: Tensor, dtype: torch.dtype) -> Tensor | None:
    if mask is None:
        return None
    if mask.shape != target.shape:
        raise ValueError(f"mask {tuple(mask.shape)} must have the target's shape {tuple(target.shape)}")
    return mask.to(dtype)


def dice_loss(
    logits: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    softmax: bool = True,
    smooth: float = 1e-10,
) -> Tensor:
    """Multi-class soft Dice loss, background included, averaged over the ``K`` classes.

    Follows BCP's mask-aware ``DiceLoss`` (code/utils/losses.py), which is SSL4MIS's with a mask:
    per class ``c``, sums over the batch and all voxels (not per image),
    ``L_c = 1 - (2 sum p_c y_c m + s) / (sum p_c^2 m + sum y_c^2 m + s)``, ``L = mean_c L_c``,
    with ``y`` the one-hot target, ``m`` the mask and ``s = smooth`` (BCP: 1e-10).
    A class absent from target and prediction inside the mask contributes 0; an empty mask gives 0.

    Args:
        logits: ``(B, K, *S)`` logits, or probabilities with ``softmax=False``.
        target: ``(B, *S)`` int64.
        mask: ``(B, *S)`` bool/float or None.
    Returns:
        scalar.
    """
    probs = torch.softmax(logits, dim=1) if softmax else logits
    k = probs.shape[1]
    onehot = F.one_hot(target.long(), k).movedim(-1, 1).to(probs.dtype)  # (B, K, *S)
    m = _mask(mask, target, probs.dtype)
    if m is not None:
        m = m.unsqueeze(1)
        probs_m, onehot_m = probs * m, onehot * m
    else:
        probs_m, onehot_m = probs, onehot
    dims = [0] + list(range(2, probs.ndim))
    inter = (probs_m * onehot).sum(dims)
    z_sum = (probs_m * probs).sum(dims)
    y_sum = (onehot_m * onehot).sum(dims)
    dice = (2.0 * inter + smooth) / (z_sum + y_sum + smooth)
    return (1.0 - dice).mean()


def ce_loss(logits: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Cross-entropy averaged over the masked voxels only: ``sum(CE * m) / sum(m)``.

    0 (with a zero gradient, no NaN) when the mask is empty. ``mask=None``: the plain mean.
    ``logits`` ``(B, K, *S)``, ``target`` ``(B, *S)`` -> scalar.
    """
    ce = F.cross_entropy(logits, target.long(), reduction="none")  # (B, *S)
    m = _mask(mask, target, ce.dtype)
    if m is None:
        return ce.mean()
    return (ce * m).sum() / m.sum().clamp_min(1e-16)  # empty mask: 0 / 1e-16 = 0, no host sync


def sup_loss(logits: Tensor, target: Tensor, mask: Tensor | None = None,
             parts: dict[str, float] | None = None) -> Tensor:
    """``0.5 * (CE + Dice)`` (SPEC §4), both restricted to ``mask``; shapes as :func:`dice_loss`.

    The supervised loss of every method. ``parts``: when given, receives ``ce`` and ``dice`` (floats, for logs).
    """
    ce, dice = ce_loss(logits, target, mask), dice_loss(logits, target, mask)
    if parts is not None:
        parts.update(ce=ce.item(), dice=dice.item())
    return 0.5 * (ce + dice)


def mix_loss(logits: Tensor, target: Tensor, labeled: Tensor, unlabeled: Tensor | None = None,
             u_weight: float = 0.5, l_weight: float = 1.0) -> Tensor:
    """BCP's ``mix_loss`` on a copy-paste mixed batch: ``l_weight sup(labeled) + u_weight sup(unlabeled)``
    with ``sup`` = :func:`sup_loss` = ``0.5 (CE + Dice)`` restricted to each region.

    ``labeled`` ``(B, *S)`` bool: where ``target`` is ground truth; ``unlabeled`` ``(B, *S)`` bool: where it
    is a pseudo-label that may supervise (default ``~labeled``; UnCoL passes its confident region only).
    BCP (code/utils/BCP_utils.py ``mix_loss``) and the UnCoL authors' ``masked_mix_loss``: ``u_weight = 0.5``.
    """
    unlabeled = ~labeled if unlabeled is None else unlabeled
    return l_weight * sup_loss(logits, target, labeled) + u_weight * sup_loss(logits, target, unlabeled)
