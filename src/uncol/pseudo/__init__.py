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
    "FUSION_MODES",
    "PseudoLabel",
    "entropy",
    "entropy_from_logits",
    "fuse",
    "largest_component",
    "linear_rampup",
    "poly_lr",
    "schedules",
    "sigmoid_rampup",
    "uamt_threshold",
    "uapl",
    "uapl_threshold",
    "uncertainty",
]
