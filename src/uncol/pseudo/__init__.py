"""Uncertainty measures, ramp/threshold schedules and uncertainty-aware pseudo-label fusion."""
from uncol.pseudo import schedules, uapl, uncertainty
from uncol.pseudo.schedules import (
    linear_rampup,
    poly_lr,
    sigmoid_rampup,
    uamt_threshold,
    uapl_threshold,
)
from uncol.pseudo.uapl import FUSION_MODES, PseudoLabel, fuse, largest_component
from uncol.pseudo.uncertainty import entropy, entropy_from_logits

__all__ = [
    "schedules",
    "uapl",
    "uncertainty",
    "linear_rampup",
    "poly_lr",
    "sigmoid_rampup",
    "uamt_threshold",
    "uapl_threshold",
    "FUSION_MODES",
    "PseudoLabel",
    "fuse",
    "largest_component",
    "entropy",
    "entropy_from_logits",
]
