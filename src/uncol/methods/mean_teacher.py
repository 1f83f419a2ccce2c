"""Mean Teacher (Tarvainen & Valpola, NeurIPS 2017), as SSL4MIS ``train_mean_teacher_{2D,3D}.py``.

One stage on labelled + unlabelled batches (``train.labeled_bs`` + ``train.unlabeled_bs``):

* the student sees the labelled and unlabelled images in one forward pass;
* ``L_sup = 0.5 (CE + Dice)`` on the labelled images;
* the teacher (EMA of the student) sees the unlabelled images with Gaussian input noise
  ``clip(N(0, 0.1^2), -0.2, 0.2)``; ``L_con = mean((softmax(z_stu) - softmax(z_tea))^2)``
  (:func:`uncol.losses.consistency.softmax_mse`);
* ``L = L_sup + w(t) L_con`` with ``w(t) = consistency * sigmoid_rampup(t, consistency_rampup)``;
* after every optimiser step ``theta_T <- alpha theta_T + (1 - alpha) theta`` (``alpha = 0.99``).

Paper vs code, and what we follow:
* EMA: the paper states a constant ``alpha``; both the authors' code and SSL4MIS use
  ``alpha_t = min(1 - 1 / (t + 1), alpha)`` (the teacher follows the student closely at first). We
  follow the code (``ema_warmup: true``); ``false`` gives the constant ``alpha``.
* Teacher noise: the paper perturbs both models (input noise + dropout). SSL4MIS never puts its EMA
  model in eval mode, so the teacher pass has dropout and batch-norm batch statistics; we follow that
  (``teacher_train_mode: true``).
* Ramp: SSL4MIS ramps over ``iter // 150`` against 200 "epochs", i.e. its whole 30k-iteration run;
  we ramp over ``consistency_rampup`` iterations, by default 40 % of the stage (ours).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from uncol.data.sampler import Batch
from uncol.errors import ConfigError
from uncol.losses.consistency import softmax_mse
from uncol.losses.segmentation import sup_loss
from uncol.methods.base import METHODS, Method, MethodContext, StagePlan, StepOutput
from uncol.schedules import sigmoid_rampup
from uncol.teachers.ema import EMA

RAMPUP_FRACTION = 0.4  # default ramp length: 40 % of the stage (ours)


@contextlib.contextmanager
def stochastic(module: nn.Module) -> Iterator[nn.Module]:
    """Run ``module`` in train mode (dropout on, batch-norm batch statistics) inside the block, then restore."""
    was = module.training
    module.train()
    try:
        yield module
    finally:
        module.train(was)


def input_noise(x: Tensor, std: float, clip: float) -> Tensor:
    """``x + clip(N(0, std^2), -clip, clip)`` (SSL4MIS/UA-MT teacher noise); ``std = 0`` returns ``x``."""
    if std <= 0:
        return x
    return x + torch.clamp(torch.randn_like(x) * std, -clip, clip)


@dataclass(frozen=True)
class MeanTeacherParams:
    consistency: float = 0.1  # SSL4MIS (max weight of the consistency loss)
    consistency_rampup: int | None = None  # iterations; None -> 40 % of the stage (ours)
    ema_momentum: float = 0.99  # paper / SSL4MIS
    ema_warmup: bool = True  # alpha_t = min(1 - 1/(t+1), alpha) as the authors' code and SSL4MIS
    noise_std: float = 0.1  # SSL4MIS: clamp(randn * 0.1, -0.2, 0.2) on the teacher input
    noise_clip: float = 0.2
    teacher_train_mode: bool = True  # SSL4MIS: teacher pass with dropout + batch-norm batch statistics


@METHODS.register("mean_teacher")
class MeanTeacher(Method):
    """Student + EMA teacher with a softmax-MSE consistency on unlabelled images."""

    Params = MeanTeacherParams

    def __init__(self, ctx: MethodContext, params: MeanTeacherParams) -> None:
        super().__init__(ctx, params)
        self.ema = EMA(self.student, momentum=params.ema_momentum, warmup=params.ema_warmup)

    def stages(self) -> list[StagePlan]:
        t = self.cfg.train
        return [StagePlan("main", t.iterations, t.labeled_bs, t.unlabeled_bs)]

    def after_step(self, it: int, total: int) -> None:
        self.ema.update(self.student)

    # -- pieces ----------------------------------------------------------------------------------------
    def consistency_weight(self, it: int, total: int) -> float:
        """``consistency * sigmoid_rampup(it, T_r)``, ``T_r = consistency_rampup`` or 40 % of ``total``."""
        p = self.params
        ramp = p.consistency_rampup if p.consistency_rampup is not None else RAMPUP_FRACTION * total
        return p.consistency * sigmoid_rampup(it, ramp)

    @torch.no_grad()
    def teacher_probs(self, x: Tensor) -> Tensor:
        """One noisy teacher pass: ``softmax(T(x + noise))`` ``(B, K, *S)``."""
        p = self.params
        ctx = stochastic(self.ema.module) if p.teacher_train_mode else contextlib.nullcontext()
        with ctx:
            return torch.softmax(self.ema.module(input_noise(x, p.noise_std, p.noise_clip)).float(), dim=1)

    def student_logits(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """One student pass on labelled + unlabelled images -> ``(z_l (B_l,K,*S), z_u (B_u,K,*S))``."""
        if batch.unlabeled is None:
            raise ConfigError(f"method {self.cfg.method.name!r} needs unlabelled images: set train.unlabeled_bs > 0")
        xl, xu = batch.labeled["image"], batch.unlabeled["image"]
        z = self.student(torch.cat([xl, xu]))
        zl, zu = z.split([xl.shape[0], xu.shape[0]])
        return zl, zu

    def supervised(self, zl: Tensor, yl: Tensor, parts: dict[str, float]) -> Tensor:
        return sup_loss(zl, yl, parts=parts)

    # -- the step --------------------------------------------------------------------------------------
    def train_step(self, batch: Batch, it: int, total: int) -> StepOutput:
        parts: dict[str, float] = {}
        zl, zu = self.student_logits(batch)
        l_sup = self.supervised(zl, batch.labeled["label"], parts)
        p_t = self.teacher_probs(batch.unlabeled["image"])
        l_con = softmax_mse(zu, p_t)
        w = self.consistency_weight(it, total)
        loss = l_sup + w * l_con
        parts.update(sup=l_sup.item(), consistency=l_con.item(), weight=w)
        return StepOutput(loss, {"loss": loss.item(), **parts})
