"""BatchNorm statistics of a model, recomputed from forward passes (no gradient, no parameter change).

UnCoL's student reads, in training, knowledge tokens that differ from the ones it reads at inference
(the teacher's in stage 1), so its running statistics can be re-estimated with inference-time
(prompt-free) passes before it is evaluated (``method.params.recalibrate_bn``).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

__all__ = ["batchnorms", "recalibrate_batchnorm", "update_batchnorm"]


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` (any dimension)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[Tensor]) -> int:
    """Replace ``model``'s BatchNorm running statistics by their cumulative average over ``model(x)`` for
    each ``x (B, C, *S)`` of ``batches``; every other module stays in eval mode (no dropout). Returns the
    number of batches used (0: nothing changed). Training flags and momenta are restored afterwards."""
    bns = batchnorms(model)
    if not bns:
        return 0
    modes = [(m, m.training) for m in model.modules()]
    momenta = [(m, m.momentum) for m in bns]
    n = 0
    try:
        model.eval()
        for x in batches:
            if n == 0:
                for m in bns:
                    m.reset_running_stats()
                    m.momentum = None  # cumulative average over the batches
                    m.train()
            model(x)
            n += 1
    finally:
        for m, mo in momenta:
            m.momentum = mo
        for m, t in modes:
            m.training = t
    return n


@torch.no_grad()
def update_batchnorm(model: nn.Module, x: Tensor) -> None:
    """One forward pass of ``model`` on ``x (B, C, *S)`` with only its BatchNorm layers in training mode:
    their running statistics move towards ``x``'s by their momentum. Flags are restored afterwards."""
    bns = batchnorms(model)
    if not bns:
        return
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        for m in bns:
            m.train()
        model(x)
    finally:
        for m, t in modes:
            m.training = t
