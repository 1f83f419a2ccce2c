"""Supervised baseline: labelled images only, ``L_sup = 0.5 (CE + Dice)``."""
from __future__ import annotations

from dataclasses import dataclass

from uncol.data.sampler import Batch
from uncol.losses.segmentation import sup_loss
from uncol.methods.base import METHODS, Method, StepOutput


@dataclass(frozen=True)
class SupervisedParams:
    pass


@METHODS.register("supervised")
class Supervised(Method):
    """Trains the student on ``batch.labeled`` with Dice + CE (SSL4MIS/BCP weighting 0.5 each)."""

    Params = SupervisedParams

    def train_step(self, batch: Batch, it: int, total: int) -> StepOutput:
        x, y = batch.labeled["image"], batch.labeled["label"]
        parts: dict[str, float] = {}
        loss = sup_loss(self.student(x), y, parts=parts)
        return StepOutput(loss, {"loss": loss.item(), **parts})
