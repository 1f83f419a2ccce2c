"""BCP: bidirectional copy-paste (Bai et al., CVPR 2023), as their ``ACDC_BCP_train.py`` / ``LA_BCP_train.py``.

Mask ``M`` (:func:`uncol.data.mixing.bcp_mask`): False inside a block of 2/3 of each side, True
elsewhere; ``mix(a, b, M)`` keeps ``a`` outside the block and pastes ``b`` into it. One mask per step.

Stage ``pretrain`` (labelled only, ``train.batch_size``): the batch is split into halves ``a, b``;
``X = mix(X_a, X_b, M)``, ``Y = mix(Y_a, Y_b, M)``; loss :func:`mix_loss` with both weights 1.

Stage ``selftrain`` (``train.labeled_bs`` = ``train.unlabeled_bs``): the EMA teacher, initialised from
the pre-trained student, labels the un-mixed unlabelled images (``argmax``; optionally only the largest
connected component per class, as their code). Halves ``a, b`` of each stream are mixed both ways::

    X_in  = mix(X_l^b, X_u^b, M)   target mix(Y_l^b, P_u^b, M)   ground truth outside the block
    X_out = mix(X_u^a, X_l^a, M)   target mix(P_u^a, Y_l^a, M)   ground truth inside the block

and ``L = mix_loss(X_in) + mix_loss(X_out)``, each ``0.5 [ (CE + Dice)(GT part) + u_weight (CE + Dice)(pseudo part) ]``
with ``u_weight = 0.5``; the teacher follows with ``alpha = 0.99`` after every step.

Paper vs code: the paper writes ``L = L_in + L_out`` with ``L_seg = Dice + CE``; the code halves it
(``(dice + ce) / 2``): we follow the code's scale (the lr interacts with it). The code applies the
largest-component filter always; the paper does not mention it: ``largest_component: false`` by default.
The code keeps its teacher in train mode (dropout, batch-norm batch statistics); we run it in eval mode
(``teacher_train_mode: true`` restores the code's). With one image per stream the halves are the batch itself.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor

from uncol.data.mixing import bcp_mask, half_slices, mix
from uncol.data.sampler import Batch
from uncol.errors import ConfigError
from uncol.losses.segmentation import mix_loss
from uncol.methods.base import METHODS, Method, MethodContext, StagePlan, StepOutput
from uncol.methods.mean_teacher import stochastic
from uncol.pseudo.uncertainty import hard_label
from uncol.teachers.ema import EMA


@dataclass(frozen=True)
class BCPParams:
    pretrain_iterations: int = 0  # 0 -> train.iterations
    selftrain_iterations: int = 0  # 0 -> train.iterations
    u_weight: float = 0.5  # weight of the pseudo-labelled part (paper and code)
    mask_ratio: float = 2.0 / 3.0  # block side / image side (paper and code)
    ema_momentum: float = 0.99  # paper and code
    largest_component: bool = False  # their code: always on; the paper: not mentioned
    teacher_train_mode: bool = False  # their code: True (teacher with dropout + batch statistics)


def halves(x: Tensor) -> tuple[Tensor, Tensor]:
    """The first and second half of a batch (``B // 2`` each; the batch itself twice when ``B == 1``)."""
    a, b = half_slices(x.shape[0])
    return x[a], x[b]


@METHODS.register("bcp")
class BCP(Method):
    """Copy-paste pre-training, then bidirectional copy-paste self-training with an EMA teacher."""

    Params = BCPParams

    def __init__(self, ctx: MethodContext, params: BCPParams) -> None:
        if not 0.0 < params.mask_ratio < 1.0:
            raise ConfigError(f"config key 'method.params.mask_ratio' must be in (0, 1), got {params.mask_ratio}")
        super().__init__(ctx, params)
        self.ema = EMA(self.student, momentum=params.ema_momentum)
        self._gen = torch.Generator().manual_seed(ctx.cfg.train.seed + 23)

    def stages(self) -> list[StagePlan]:
        t, p = self.cfg.train, self.params
        return [StagePlan("pretrain", p.pretrain_iterations or t.iterations, t.batch_size, 0),
                StagePlan("selftrain", p.selftrain_iterations or t.iterations, t.labeled_bs, t.unlabeled_bs)]

    def begin_stage(self, name: str, resumed: bool = False) -> None:
        super().begin_stage(name, resumed)
        if name == "selftrain" and not resumed:
            self.ema.reset(self.student)  # the teacher starts from the pre-trained student (their code)

    def after_step(self, it: int, total: int) -> None:
        if self.stage == "selftrain":
            self.ema.update(self.student)

    # -- pieces ----------------------------------------------------------------------------------------
    def mask(self, spatial: tuple[int, ...], device: torch.device) -> Tensor:
        """``(*S)`` bool, False inside the pasted block (drawn from the method's generator)."""
        return bcp_mask(spatial, self.params.mask_ratio, self._gen).to(device)

    @torch.no_grad()
    def pseudo_label(self, xu: Tensor) -> Tensor:
        """The EMA teacher's hard labels ``(B, *S)`` for un-mixed unlabelled images ``(B, C, *S)``."""
        teacher = self.ema.module
        ctx = stochastic(teacher) if self.params.teacher_train_mode else contextlib.nullcontext()
        with ctx:
            label = hard_label(teacher(xu))
        if self.params.largest_component:
            from uncol.pseudo.uapl import largest_component

            label = largest_component(label, self.num_classes)
        return label

    def bidirectional(self, xl: Tensor, yl: Tensor, xu: Tensor, pl: Tensor, m: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        """``[(X_in, Y_in, GT_in), (X_out, Y_out, GT_out)]``: images, targets and ground-truth regions (bool)."""
        (xl_a, xl_b), (yl_a, yl_b), (xu_a, xu_b), (pl_a, pl_b) = halves(xl), halves(yl), halves(xu), halves(pl)
        gt = m.expand(yl_b.shape)
        return [(mix(xl_b, xu_b, m), mix(yl_b, pl_b, m), gt),
                (mix(xu_a, xl_a, m), mix(pl_a, yl_a, m), ~m.expand(yl_a.shape))]

    # -- the two stages --------------------------------------------------------------------------------
    def train_step(self, batch: Batch, it: int, total: int) -> StepOutput:
        return self._pretrain(batch) if self.stage == "pretrain" else self._selftrain(batch)

    def _pretrain(self, batch: Batch) -> StepOutput:
        x, y = batch.labeled["image"], batch.labeled["label"]
        m = self.mask(tuple(x.shape[2:]), x.device)
        (xa, xb), (ya, yb) = halves(x), halves(y)
        loss = mix_loss(self.student(mix(xa, xb, m)), mix(ya, yb, m), m.expand(ya.shape), u_weight=1.0)
        return StepOutput(loss, {"loss": loss.item()})

    def _selftrain(self, batch: Batch) -> StepOutput:
        if batch.unlabeled is None:
            raise ConfigError("BCP self-training needs unlabelled images: set train.unlabeled_bs > 0")
        xl, yl, xu = batch.labeled["image"], batch.labeled["label"], batch.unlabeled["image"]
        if xl.shape[0] != xu.shape[0]:
            raise ConfigError("BCP pairs labelled and unlabelled images: set train.labeled_bs equal to train.unlabeled_bs")
        pl = self.pseudo_label(xu)
        m = self.mask(tuple(xl.shape[2:]), xl.device)
        losses = [mix_loss(self.student(x), y, gt, u_weight=self.params.u_weight)
                  for x, y, gt in self.bidirectional(xl, yl, xu, pl, m)]
        loss = losses[0] + losses[1]
        return StepOutput(loss, {"loss": loss.item(), "loss_in": losses[0].item(), "loss_out": losses[1].item()})
