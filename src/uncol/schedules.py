"""Ramp-up, threshold and learning-rate schedules (pure functions of the iteration): the one module
every method and the training loop take their schedules from (a leaf: imports nothing of uncol).

``t`` is the current iteration (0-based) and ``T`` the ramp length, both in iterations.
"""
from __future__ import annotations

import math

__all__ = [
    "entropy_threshold",
    "poly_lr",
    "sigmoid_rampup",
    "uamt_threshold",
    "uapl_threshold",
]


def sigmoid_rampup(t: float, T: float) -> float:
    """``r(t) = exp(-5 (1 - clip(t, 0, T) / T)^2)`` (Laine & Aila 2017; SSL4MIS ``ramps.sigmoid_rampup``).

    Known values: ``r(0) = exp(-5) ~ 0.0067`` (not exactly 0: the formula is used as is, like
    SSL4MIS and the authors' code), ``r(T/2) = exp(-1.25) ~ 0.2865``, ``r(t >= T) = 1``.
    ``T <= 0`` means no ramp (always 1).
    """
    if T <= 0:
        return 1.0
    phase = 1.0 - min(max(float(t), 0.0), float(T)) / float(T)
    return math.exp(-5.0 * phase * phase)



def entropy_threshold(t: float, T: float, num_classes: int, normalized: bool = False) -> float:
    """The UA-MT entropy threshold ``tau(t) = (0.75 + 0.25 r(t)) H_max`` with ``r`` = :func:`sigmoid_rampup`.

    ``H_max = ln C`` (the largest entropy over ``C`` classes), or ``1`` when the entropy is
    ``normalized`` by ``ln C`` (the authors' UnCoL code). The threshold rises, so the confidence
    filter ``U < tau`` relaxes during training.
    """
    h_max = 1.0 if normalized else math.log(num_classes)
    return (0.75 + 0.25 * sigmoid_rampup(t, T)) * h_max


def uapl_threshold(t: float, T: float, num_classes: int, normalized: bool = False) -> float:
    """UnCoL's UAPL threshold (SPEC §3): ``(0.75 + 0.25 r(t)) ln C``; see :func:`entropy_threshold`."""
    return entropy_threshold(t, T, num_classes, normalized)


def uamt_threshold(t: float, T: float, num_classes: int = 2) -> float:
    """UA-MT's threshold (Yu et al., MICCAI 2019): ``(0.75 + 0.25 r(t)) ln 2`` in their binary setting,
    generalised to ``ln C``; ``T`` is their ``max_iterations``."""
    return entropy_threshold(t, T, num_classes, normalized=False)


def poly_lr(base: float, it: float, max_it: float, power: float = 0.9) -> float:
    """Poly decay ``base * (1 - it / max_it) ** power`` (``it`` clipped to ``[0, max_it]``)."""
    if max_it <= 0:
        return base
    frac = min(max(float(it), 0.0), float(max_it)) / float(max_it)
    return base * (1.0 - frac) ** power
