"""Voxel-wise uncertainty measures shared by pseudo-labelling, the baselines and evaluation.

All functions are pure, differentiable where it makes sense, and take the class axis as ``dim``
(``1`` for ``(B, K, *S)`` tensors). Natural logarithms throughout: the entropy of a uniform
distribution over ``K`` classes is ``ln K``; ``normalized=True`` divides by ``ln K`` so values lie in
``[0, 1]`` (the authors' UnCoL code does this, SPEC §8).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "energy_score",
    "entropy",
    "hard_label",
    "kl_divergence",
    "max_probability",
    "mc_mutual_information",
    "mc_variance",
]


def _norm(num_classes: int) -> float:
    return math.log(num_classes) if num_classes > 1 else 1.0


def hard_label(scores: Tensor, dim: int = 1) -> Tensor:
    """The class of highest score along ``dim`` (``(B, K, *S) -> (B, *S)``, int64), as ``scores.argmax(dim)``:
    the first maximal class wins ties (``torch.max`` and ``torch.argmax`` both document it).

    ``torch.max(dim).indices`` gives the same indices ~20x faster on CPU than ``argmax`` when ``dim`` is not the
    last axis (measured at ``(2, 2, 256, 256)``, one thread: 1 ms vs 25 ms; issue 15), which is the class axis of
    every segmentation output."""
    return scores.max(dim=dim).indices


def entropy(p: Tensor, dim: int = 1, normalized: bool = False, keepdim: bool = False) -> Tensor:
    """Shannon entropy ``U = -sum_c p_c ln p_c`` of probabilities ``p`` along ``dim``.

    Args:
        p: probabilities, e.g. ``(B, K, *S)``; each slice along ``dim`` sums to 1. ``0 ln 0 = 0``
            exactly (``torch.xlogy``), so one-hot inputs give 0 without an epsilon.
        dim: the class axis.
        normalized: divide by ``ln K`` (values in ``[0, 1]``).
        keepdim: keep the class axis (size 1).
    Returns:
        ``(B, *S)`` (or ``(B, 1, *S)`` with ``keepdim``), in nats (or fraction of ``ln K``).
    """
    u = -torch.xlogy(p, p).sum(dim=dim, keepdim=keepdim)
    return u / _norm(p.shape[dim]) if normalized else u


def kl_divergence(p: Tensor, q: Tensor, dim: int = 1, keepdim: bool = False, eps: float = 0.0) -> Tensor:
    """``KL(p || q) = sum_c p_c (ln p_c - ln q_c)`` along ``dim`` (nats).

    ``p`` and ``q`` are probabilities of the same shape. Terms with ``p_c = 0`` are 0. ``eps`` is
    added to ``q`` inside the log (0 by default: a zero ``q_c`` under a positive ``p_c`` gives inf).
    """
    return (torch.xlogy(p, p) - torch.xlogy(p, q + eps)).sum(dim=dim, keepdim=keepdim)


def max_probability(p: Tensor, dim: int = 1) -> Tensor:
    """Confidence ``max_c p_c``: ``(B, K, *S) -> (B, *S)`` (1 = certain; use ``1 - max`` as uncertainty)."""
    return p.amax(dim=dim)


def energy_score(logits: Tensor, temperature: float = 1.0, dim: int = 1) -> Tensor:
    """Energy ``E = -T logsumexp(logits / T)`` (Liu et al., NeurIPS 2020): ``(B, K, *S) -> (B, *S)``.

    Higher energy = less confident, so ``E`` itself is the uncertainty score.
    """
    return -temperature * torch.logsumexp(logits / temperature, dim=dim)


def mc_mutual_information(samples: Tensor, sample_dim: int = 0, class_dim: int = 2) -> Tensor:
    """Mutual information (BALD) of Monte-Carlo probability samples.

    ``I = H(mean_n p_n) - mean_n H(p_n)`` (epistemic part of the predictive entropy).

    Args:
        samples: ``(N, B, K, *S)`` probabilities of ``N`` stochastic passes (e.g. MC dropout).
        sample_dim, class_dim: axes of the samples and of the classes (in ``samples``).
    Returns:
        ``(B, *S)``, nats, >= 0 up to rounding (clamped at 0).
    """
    mean = samples.mean(dim=sample_dim)
    cls = class_dim - 1 if class_dim > sample_dim else class_dim
    total = entropy(mean, dim=cls)
    expected = entropy(samples, dim=class_dim).mean(dim=sample_dim)
    return (total - expected).clamp_min(0.0)


def mc_variance(samples: Tensor, sample_dim: int = 0, class_dim: int = 2) -> Tensor:
    """Predictive variance of MC samples: the variance over samples (population, ``1/N``), averaged
    over classes. ``(N, B, K, *S) -> (B, *S)``."""
    var = samples.var(dim=sample_dim, unbiased=False)
    cls = class_dim - 1 if class_dim > sample_dim else class_dim
    return var.mean(dim=cls)
