"""URPC: uncertainty-rectified pyramid consistency (Luo et al., MICCAI 2021 / MedIA 2022), as SSL4MIS
``train_uncertainty_rectified_pyramid_consistency_{2D,3D}.py`` (the authors' code).

Needs a model with ``forward_pyramid(x) -> [S logits (B, K, *S)]`` (``model.name: unet_urpc``,
:mod:`uncol.models.urpc`: main output + 3 perturbed auxiliary scales, resized to the input).

* one student pass on labelled + unlabelled images;
* ``L_sup = (1/S) sum_s 0.5 (CE + Dice)(scale s)`` on the labelled images (SSL4MIS: the 8 terms / 8);
* on the unlabelled images, with ``p_s = softmax`` of scale ``s`` and ``p_bar = mean_s p_s``:
  ``D_s = KL(p_bar || p_s)``, rectification weight ``w_s = exp(-D_s)``,
  ``L_con = (1/S) sum_s [ mean(w_s (p_bar - p_s)^2) / (mean(w_s) + 1e-8) + mean(D_s) ]``
  (:func:`uncol.losses.consistency.urpc_consistency`);
* ``L = L_sup + w(t) L_con``, ``w(t) = consistency * sigmoid_rampup(t, consistency_rampup)``.

Paper vs code: we follow the code (the paper's formulas are the same up to the normalisation by
``mean(w_s)`` and the order of the KL, which the code fixes as ``KL(p_bar || p_s)``). SSL4MIS ramps
over ``iter // 150`` against 200 "epochs" (its whole run); we ramp over ``consistency_rampup`` iterations,
by default 40 % of the stage (ours). No EMA teacher.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from uncol.data.sampler import Batch
from uncol.errors import ConfigError
from uncol.losses.consistency import urpc_consistency
from uncol.losses.segmentation import sup_loss
from uncol.methods.base import METHODS, Method, MethodContext, StagePlan, StepOutput
from uncol.methods.mean_teacher import RAMPUP_FRACTION
from uncol.schedules import sigmoid_rampup


@dataclass(frozen=True)
class URPCParams:
    consistency: float = 0.1  # SSL4MIS
    consistency_rampup: int | None = None  # iterations; None -> 40 % of the stage (ours)


@METHODS.register("urpc")
class URPC(Method):
    """Pyramid supervision on labelled images + rectified pyramid consistency on unlabelled ones."""

    Params = URPCParams

    def __init__(self, ctx: MethodContext, params: URPCParams) -> None:
        if not hasattr(ctx.model, "forward_pyramid"):
            raise ConfigError(f"method 'urpc' needs a multi-scale model: set model.name: unet_urpc "
                              f"(got {ctx.cfg.model.name!r})")
        super().__init__(ctx, params)

    def stages(self) -> list[StagePlan]:
        t = self.cfg.train
        return [StagePlan("main", t.iterations, t.labeled_bs, t.unlabeled_bs)]

    def consistency_weight(self, it: int, total: int) -> float:
        p = self.params
        ramp = p.consistency_rampup if p.consistency_rampup is not None else RAMPUP_FRACTION * total
        return p.consistency * sigmoid_rampup(it, ramp)

    def train_step(self, batch: Batch, it: int, total: int) -> StepOutput:
        if batch.unlabeled is None:
            raise ConfigError("method 'urpc' needs unlabelled images: set train.unlabeled_bs > 0")
        xl, yl, xu = batch.labeled["image"], batch.labeled["label"], batch.unlabeled["image"]
        pyramid: list[Tensor] = self.student.forward_pyramid(torch.cat([xl, xu]))
        split = [z.split([xl.shape[0], xu.shape[0]]) for z in pyramid]
        l_sup = torch.stack([sup_loss(zl, yl) for zl, _ in split]).mean()
        l_con = urpc_consistency([zu for _, zu in split])
        w = self.consistency_weight(it, total)
        loss = l_sup + w * l_con
        return StepOutput(loss, {"loss": loss.item(), "sup": l_sup.item(), "consistency": l_con.item(), "weight": w})
