"""Uncertainty-aware pseudo-labelling (UAPL, SPEC §3, paper eq. 3-4) and its ablation switches.

``fuse(p_g, p_s, tau, mode)`` turns the generalized teacher's and the specialized teacher's class
probabilities into a hard pseudo-label and the region it may supervise:

* ``"uapl"`` (the paper): entropies ``U_G, U_S``; confidence masks ``M_k = [U_k < tau]``;
  both confident -> ``w_G p_G + w_S p_S`` with ``w_k = exp(-U_k) / (exp(-U_G) + exp(-U_S))``;
  only one confident -> that teacher's ``p_k``; neither -> ignored. Label ``argmax_c p``,
  mask ``M_G or M_S``.
* ``"s_only"`` (S-Tch-PL, Table 4): label ``argmax p_S``, mask ``M_S`` (``p_g`` unused, may be None).
* ``"avg"`` (Avg-Tch-PL, Table 4): ``p = (p_G + p_S) / 2``, mask ``[H(p) < tau]`` -- **(ours)**: the
  paper only says "plain average"; we filter it by the entropy of the averaged distribution with
  the same threshold, so the three switches differ only in how ``p`` and its confidence are formed.

Departures of the authors' public code (``fuse_pseudo_label_with_mask_fast``), not followed here:
it uses ``U <= tau`` and applies the weighted average everywhere (the single-teacher cases are
computed but unused). ``normalize_entropy=True`` reproduces their entropy scale (``U / ln C``, with
the threshold then in ``[0.75, 1]``, see :func:`uncol.schedules.uapl_threshold`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from uncol.pseudo.uncertainty import entropy, hard_label
from uncol.registry import Registry

__all__ = ["FUSION_MODES", "PseudoLabel", "authors_probs", "fuse", "largest_component"]

Threshold = float | Tensor


@dataclass
class PseudoLabel:
    """A hard pseudo-label and where it may supervise.

    label: ``(B, *S)`` int64 in ``[0, K)``. mask: ``(B, *S)`` bool, True = supervise.
    probs: ``(B, K, *S)`` the fused probabilities the label is the argmax of (outside ``mask``
    they are the weighted average, for inspection only).
    """

    label: Tensor
    mask: Tensor
    probs: Tensor


FusionFn = Callable[[Tensor | None, Tensor, Threshold, bool], PseudoLabel]
FUSION_MODES: Registry[FusionFn] = Registry("pseudo-label mode")


def _tau(tau: Threshold, like: Tensor) -> Tensor | float:
    """A float, or a tensor broadcastable to ``(B, *S)`` (e.g. ``(B,)`` per image -> ``(B, 1, ...)``)."""
    if isinstance(tau, Tensor) and tau.ndim == 1 and like.ndim > 1:
        return tau.view(-1, *([1] * (like.ndim - 1))).to(like)
    return tau


def _check(p: Tensor, name: str) -> None:
    if p.ndim < 3:
        raise ValueError(f"{name} must be (B, K, *S) probabilities, got shape {tuple(p.shape)}")


@FUSION_MODES.register("uapl")
def _fuse_uapl(p_g: Tensor | None, p_s: Tensor, tau: Threshold, normalize: bool) -> PseudoLabel:
    if p_g is None:
        raise ValueError("mode 'uapl' needs the generalized teacher's probabilities p_g (got None)")
    _check(p_g, "p_g")
    if p_g.shape != p_s.shape:
        raise ValueError(f"p_g {tuple(p_g.shape)} and p_s {tuple(p_s.shape)} must have the same shape")
    p_g = p_g.to(p_s.dtype)
    u_g, u_s = entropy(p_g, normalized=normalize), entropy(p_s, normalized=normalize)  # (B, *S)
    t = _tau(tau, u_s)
    m_g, m_s = u_g < t, u_s < t
    w_g = torch.sigmoid(u_s - u_g)  # = exp(-U_G) / (exp(-U_G) + exp(-U_S)), overflow-free
    both = w_g.unsqueeze(1) * p_g + (1.0 - w_g).unsqueeze(1) * p_s
    only_g = (m_g & ~m_s).unsqueeze(1)
    only_s = (m_s & ~m_g).unsqueeze(1)
    probs = torch.where(only_g, p_g, torch.where(only_s, p_s, both))
    return PseudoLabel(label=hard_label(probs), mask=m_g | m_s, probs=probs)


@FUSION_MODES.register("s_only")
def _fuse_s_only(p_g: Tensor | None, p_s: Tensor, tau: Threshold, normalize: bool) -> PseudoLabel:
    u_s = entropy(p_s, normalized=normalize)
    return PseudoLabel(label=hard_label(p_s), mask=u_s < _tau(tau, u_s), probs=p_s)


@FUSION_MODES.register("avg")
def _fuse_avg(p_g: Tensor | None, p_s: Tensor, tau: Threshold, normalize: bool) -> PseudoLabel:
    if p_g is None:
        raise ValueError("mode 'avg' needs the generalized teacher's probabilities p_g (got None)")
    if p_g.shape != p_s.shape:
        raise ValueError(f"p_g {tuple(p_g.shape)} and p_s {tuple(p_s.shape)} must have the same shape")
    probs = 0.5 * (p_g.to(p_s.dtype) + p_s)
    u = entropy(probs, normalized=normalize)
    return PseudoLabel(label=hard_label(probs), mask=u < _tau(tau, u), probs=probs)


@torch.no_grad()
def fuse(
    p_g: Tensor | None,
    p_s: Tensor,
    tau: Threshold,
    mode: str = "uapl",
    normalize_entropy: bool = False,
) -> PseudoLabel:
    """Fuse two teachers' probabilities into a pseudo-label (see the module docstring).

    Args:
        p_g: generalized teacher probabilities ``(B, K, *S)`` (None allowed for ``"s_only"``).
        p_s: specialized (EMA) teacher probabilities ``(B, K, *S)``.
        tau: entropy threshold in nats (``uapl_threshold(t, T, K)``), a float or a ``(B,)`` /
            ``(B, *S)`` tensor. Confident means ``U < tau`` (strict, as SPEC §3).
        mode: ``"uapl"`` | ``"s_only"`` | ``"avg"``.
        normalize_entropy: compare ``U / ln K`` instead of ``U`` (then ``tau`` is in ``[0, 1]``);
            the weights ``exp(-U)`` use the same scale (authors' code).
    Returns:
        :class:`PseudoLabel` (no gradient: teachers are targets).
    """
    _check(p_s, "p_s")
    return FUSION_MODES.get(mode)(p_g, p_s, tau, normalize_entropy)


def authors_probs(fg: Tensor, prompted: Tensor) -> Tensor:
    """The generalized teacher's class probabilities as the authors' code forms them (SPEC §8):
    ``softmax([1 - sum_c fg_c, fg_1, ..., fg_{K-1}])`` over the per-class sigmoid outputs.

    A softmax of values in ``[-(K-2), 1]`` compresses G's confidence: a certain foreground pixel of a
    binary task gets ``softmax([0, 1]) = (0.27, 0.73)``, entropy 0.58 nats (0.84 of ``ln 2``), so the UAPL
    threshold filters G out early in stage 2. Classes without a prompt count as ``fg = 0``.

    Args:
        fg: ``(B, K-1, *S)`` per-class foreground probabilities in ``[0, 1]``.
        prompted: ``(B, K-1)`` bool, which classes had a prompt.
    Returns:
        ``(B, K, *S)`` probabilities summing to 1 over ``K``.
    """
    mask = prompted.to(fg.dtype).reshape(*prompted.shape, *([1] * (fg.dim() - 2)))
    fg = fg.clamp(0.0, 1.0) * mask
    return torch.softmax(torch.cat([1.0 - fg.sum(1, keepdim=True), fg], dim=1), dim=1)


def largest_component(label: Tensor, num_classes: int) -> Tensor:
    """Keep, per image and per foreground class, only the largest connected component.

    The authors' code applies this to the EMA teacher's hard pseudo-label before prompting
    (``get_2DLargestCC``, from BCP). Connectivity is full (8-neighbourhood in 2D, 26 in 3D), as
    ``skimage.measure.label``'s default there; removed voxels become background (0); an absent class
    stays absent.

    Args:
        label: ``(B, *S)`` int64 hard labels.
        num_classes: ``K`` (background included).
    Returns:
        ``(B, *S)`` int64 on ``label``'s device.
    """
    import numpy as np
    from scipy import ndimage

    arr = label.detach().cpu().numpy()
    out = np.zeros_like(arr)
    structure = ndimage.generate_binary_structure(arr.ndim - 1, arr.ndim - 1)
    for b in range(arr.shape[0]):
        for c in range(1, num_classes):
            comp, n = ndimage.label(arr[b] == c, structure=structure)
            if n == 0:
                continue
            sizes = np.bincount(comp.ravel())[1:]
            out[b][comp == (int(sizes.argmax()) + 1)] = c
    return torch.from_numpy(out).to(label.device)
