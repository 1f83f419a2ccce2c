"""UA-MT: uncertainty-aware Mean Teacher (Yu et al., MICCAI 2019), as its code and SSL4MIS
``train_uncertainty_aware_mean_teacher_{2D,3D}.py``.

Mean Teacher (:mod:`uncol.methods.mean_teacher`: student pass, ``L_sup``, EMA, ramp) whose
consistency only counts where the teacher is certain:

* ``T = 8`` stochastic teacher passes on the unlabelled images, each with dropout (the averaged
  copy is put in train mode for them) and input noise ``clip(N(0, 0.1^2), -0.2, 0.2)``;
  ``mu = mean_t softmax``, uncertainty ``U = -sum_c mu_c ln mu_c`` (nats);
* threshold ``tau(t) = (0.75 + 0.25 sigmoid_rampup(t, T_stage)) ln C`` (their ``ln 2`` for two classes);
* ``L_con = sum(m (p_stu - p_tea)^2) / (C sum(m))``, ``m = [U < tau]``, with ``p_tea`` a separate noisy
  teacher pass (as their code; the paper's "teacher prediction");
* ``L = L_sup + w(t) L_con``, ``w`` the Mean Teacher ramp.

Paper vs code: the paper does not say which prediction the masked consistency compares with; we follow
the code (one more noisy pass, not the MC mean). The code adds ``1e-6`` inside the log; we use the exact
``0 ln 0 = 0``. The code batches the ``T`` passes two at a time; we run them one by one (same result in
distribution, less memory in 3D). EMA warm-up and teacher train mode as in Mean Teacher.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from uncol.data.sampler import Batch
from uncol.errors import ConfigError
from uncol.losses.consistency import uamt_consistency, uamt_uncertainty
from uncol.methods.base import METHODS, MethodContext, StepOutput
from uncol.methods.mean_teacher import MeanTeacher, MeanTeacherParams, input_noise, stochastic
from uncol.schedules import uamt_threshold


@dataclass(frozen=True)
class UAMTParams(MeanTeacherParams):
    mc_passes: int = 8  # T, paper and code


@METHODS.register("ua_mt")
class UAMT(MeanTeacher):
    """Mean Teacher with the consistency masked by the teacher's Monte-Carlo entropy."""

    Params = UAMTParams

    def __init__(self, ctx: MethodContext, params: UAMTParams) -> None:
        if params.mc_passes < 1:
            raise ConfigError(f"config key 'method.params.mc_passes' must be >= 1, got {params.mc_passes}")
        super().__init__(ctx, params)

    @torch.no_grad()
    def mc_uncertainty(self, x: Tensor) -> Tensor:
        """Entropy (nats) of the mean of ``mc_passes`` noisy, dropout-on teacher passes: ``(B, *S)``."""
        p = self.params
        with stochastic(self.ema.module) as teacher:
            probs = torch.stack([torch.softmax(teacher(input_noise(x, p.noise_std, p.noise_clip)).float(), dim=1)
                                 for _ in range(p.mc_passes)])
        return uamt_uncertainty(probs)

    def train_step(self, batch: Batch, it: int, total: int) -> StepOutput:
        parts: dict[str, float] = {}
        zl, zu = self.student_logits(batch)
        l_sup = self.supervised(zl, batch.labeled["label"], parts)
        xu = batch.unlabeled["image"]
        p_t = self.teacher_probs(xu)
        u = self.mc_uncertainty(xu)
        tau = uamt_threshold(it, total, self.num_classes)
        l_con = uamt_consistency(zu, p_t, u, tau)
        w = self.consistency_weight(it, total)
        loss = l_sup + w * l_con
        parts.update(sup=l_sup.item(), consistency=l_con.item(), weight=w, tau=tau,
                     certain=(u < tau).float().mean().item())
        return StepOutput(loss, {"loss": loss.item(), **parts})
