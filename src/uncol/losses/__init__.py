"""Segmentation, distillation and consistency losses."""
from uncol.losses import consistency, distill, segmentation
from uncol.losses.distill import Projector, semantic_distill_loss, visual_distill_loss
from uncol.losses.segmentation import ce_loss, dice_loss, sup_loss

__all__ = [
    "Projector",
    "ce_loss",
    "consistency",
    "dice_loss",
    "distill",
    "segmentation",
    "semantic_distill_loss",
    "sup_loss",
    "visual_distill_loss",
]
