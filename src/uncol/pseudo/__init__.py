"""Uncertainty measures and uncertainty-aware pseudo-label fusion."""
from uncol.pseudo import uapl, uncertainty
from uncol.pseudo.uapl import FUSION_MODES, PseudoLabel, authors_probs, fuse, largest_component
from uncol.pseudo.uncertainty import entropy

__all__ = [
    "FUSION_MODES",
    "PseudoLabel",
    "authors_probs",
    "entropy",
    "fuse",
    "largest_component",
    "uapl",
    "uncertainty",
]
