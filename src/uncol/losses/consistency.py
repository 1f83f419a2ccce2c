"""Consistency losses of the semi-supervised baselines, as pure functions.

* Mean Teacher (Tarvainen & Valpola 2017; SSL4MIS): ``mean((softmax(z_stu) - p_tea)^2)``.
* UA-MT (Yu et al., MICCAI 2019): the same squared difference kept only where the teacher's
  Monte-Carlo entropy is below the ramped threshold,
  ``L = sum(m * (p_stu - p_tea)^2) / (K * sum(m) + 1e-16)`` with ``m = [U < tau]`` (their code divides
  by ``2 sum(m)`` for ``K = 2`` classes; ``K sum(m)`` is that mean over masked voxels and classes).
* URPC (Luo et al., MICCAI 2021 / MedIA 2022): with ``S`` decoder scales upsampled to full size,
  ``p_bar = mean_s p_s``, ``D_s = KL(p_bar || p_s) = sum_c p_bar_c ln(p_bar_c / p_s,c)``,
  ``w_s = exp(-D_s)`` and ``L = (1/S) sum_s [ mean(w_s (p_bar - p_s)^2) / (mean(w_s) + 1e-8) + mean(D_s) ]``.
  We follow SSL4MIS's implementation (the authors' reference code): the KL is ``KL(p_bar || p_s)``
  (``nn.KLDivLoss(log p_s, p_bar)``), ``p_bar`` is *not* detached, the ``mean`` of the weighted term
  runs over classes too (``(B, K, *S)``) while ``mean(w_s)`` runs over ``(B, 1, *S)``.

Teacher probabilities are treated as constants (detached) everywhere.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from uncol.pseudo.uncertainty import entropy, kl_divergence

__all__ = [
    "softmax_mse",
    "uamt_consistency",
    "uamt_uncertainty",
    "urpc_consistency",
    "urpc_rectification",
]


def softmax_mse(student_logits: Tensor, teacher_probs: Tensor) -> Tensor:
    """Mean Teacher consistency ``mean((softmax(z_stu) - p_tea)^2)`` over all elements.

    ``student_logits`` ``(B, K, *S)``; ``teacher_probs`` ``(B, K, *S)`` probabilities (detached here).
    """
    return ((torch.softmax(student_logits, dim=1) - teacher_probs.detach()) ** 2).mean()


def uamt_uncertainty(mc_probs: Tensor) -> Tensor:
    """UA-MT uncertainty: entropy (nats) of the mean of ``T`` noisy teacher passes.

    ``mc_probs`` ``(T, B, K, *S)`` softmax probabilities -> ``(B, *S)``. (UA-MT's code adds 1e-6
    inside the log; we use the exact ``0 ln 0 = 0``.)
    """
    return entropy(mc_probs.mean(dim=0), dim=1)


def uamt_consistency(
    student_logits: Tensor, teacher_probs: Tensor, uncertainty: Tensor, tau: float | Tensor
) -> Tensor:
    """UA-MT masked consistency ``sum(m (p_stu - p_tea)^2) / (K sum(m) + 1e-16)``, ``m = [U < tau]``.

    ``student_logits``, ``teacher_probs`` ``(B, K, *S)``; ``uncertainty`` ``(B, *S)`` nats
    (:func:`uamt_uncertainty`); ``tau`` from :func:`uncol.schedules.uamt_threshold`.
    Returns a scalar (0 when nothing is certain).
    """
    k = student_logits.shape[1]
    m = (uncertainty < tau).to(student_logits.dtype).unsqueeze(1)
    dist = (torch.softmax(student_logits, dim=1) - teacher_probs.detach()) ** 2
    return (m * dist).sum() / (k * m.sum() + 1e-16)


def urpc_rectification(p_scale: Tensor, p_mean: Tensor) -> tuple[Tensor, Tensor]:
    """URPC uncertainty of one scale and its rectification weight.

    ``D = KL(p_mean || p_scale)`` summed over classes (``keepdim``) and ``w = exp(-D)``.
    ``p_scale``, ``p_mean`` ``(B, K, *S)`` probabilities -> ``(D, w)`` each ``(B, 1, *S)``.
    """
    variance = kl_divergence(p_mean, p_scale, dim=1, keepdim=True)
    return variance, torch.exp(-variance)


def urpc_consistency(logits: Sequence[Tensor]) -> Tensor:
    """URPC's uncertainty-rectified pyramid consistency (see the module docstring for the formula).

    Args:
        logits: the decoder's outputs at ``S >= 2`` scales, each ``(B, K, *S_s)``; scales other
            than the first are upsampled (bilinear/trilinear, ``align_corners=False``) to the first's size.
    Returns:
        scalar.
    """
    if len(logits) < 2:
        raise ValueError(f"URPC needs at least 2 scales, got {len(logits)}")
    size = logits[0].shape[2:]
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
    probs = [
        torch.softmax(z if z.shape[2:] == size else F.interpolate(z, size=size, mode=mode, align_corners=False), dim=1)
        for z in logits
    ]
    p_mean = torch.stack(probs).mean(dim=0)
    terms = []
    for p in probs:
        variance, w = urpc_rectification(p, p_mean)
        dist = (p_mean - p) ** 2
        terms.append((dist * w).mean() / (w.mean() + 1e-8) + variance.mean())
    return torch.stack(terms).mean()
