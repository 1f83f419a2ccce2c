"""The specialized teacher: an exponential moving average of the student (SPEC §1).

``theta_S <- alpha * theta_S + (1 - alpha) * theta_student`` after every student step, ``alpha = 0.99``.
Self-contained (no dependency on the rest of ``uncol.teachers``).
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

__all__ = ["EMA"]


class EMA(nn.Module):
    """A frozen deep copy of a model, updated as the exponential moving average of its parameters.

    * Parameters: ``theta_S <- alpha theta_S + (1 - alpha) theta`` (floating point only).
    * Buffers (BatchNorm statistics, counters): copied from the model at each update, unless
      ``copy_buffers`` is False (the copy then keeps statistics of its own).
    * ``warmup=True`` uses SSL4MIS's ``alpha_t = min(1 - 1 / (step + 1), alpha)`` (``step`` = number of
      updates done so far, so the first update copies the model); off by default (the paper's
      constant ``alpha``).
    * :meth:`freeze` turns :meth:`update` into a no-op (the authors' code freezes the EMA teacher in
      stage 2; the paper does not -- an option, default off).

    The copy is always in ``eval()`` mode with ``requires_grad=False``: ``EMA.train()`` does not
    propagate to it (call ``ema.module.train()`` explicitly for stochastic passes, e.g. UA-MT).
    :meth:`reset` re-initialises the copy from a model. ``state_dict`` holds ``module.*`` and ``num_updates``; ``forward`` calls the copy.
    """

    num_updates: Tensor

    def __init__(self, model: nn.Module, momentum: float = 0.99, warmup: bool = False) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}")
        self.momentum = float(momentum)
        self.warmup = bool(warmup)
        self.frozen = False
        self.copy_buffers = True  # False: the copy keeps its own buffers (e.g. BatchNorm statistics)
        self.module = copy.deepcopy(model)
        self.module.eval()
        self.module.requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def train(self, mode: bool = True) -> EMA:
        """Set this wrapper's flag only; the averaged copy stays in eval mode."""
        self.training = mode
        return self

    def freeze(self, frozen: bool = True) -> EMA:
        """Stop (or resume, ``frozen=False``) following the student."""
        self.frozen = frozen
        return self

    @torch.no_grad()
    def reset(self, model: nn.Module) -> None:
        """Make the copy equal to ``model`` (parameters and buffers) and restart the update count.

        Used to initialise the specialized teacher from the stage-1 student (SPEC §4).
        """
        self.module.load_state_dict(model.state_dict())
        self.num_updates.zero_()

    def current_momentum(self) -> float:
        """The ``alpha`` the next :meth:`update` will use."""
        if self.warmup:
            return min(1.0 - 1.0 / (int(self.num_updates) + 1), self.momentum)
        return self.momentum

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model`` (same architecture as the copy)."""
        if self.frozen:
            return
        alpha = self.current_momentum()
        ema_params = dict(self.module.named_parameters())
        params = dict(model.named_parameters())
        if ema_params.keys() != params.keys():
            raise ValueError("EMA.update: the model's parameters do not match the averaged copy's")
        ema_float, new_float = [], []
        for name, p_ema in ema_params.items():
            p = params[name].detach()
            if p_ema.dtype.is_floating_point:
                ema_float.append(p_ema)
                new_float.append(p.to(p_ema.dtype))
            else:
                p_ema.copy_(p)
        if ema_float:
            torch._foreach_mul_(ema_float, alpha)
            torch._foreach_add_(ema_float, new_float, alpha=1.0 - alpha)
        if self.copy_buffers:
            ema_buffers = dict(self.module.named_buffers())
            for name, buf in model.named_buffers():
                if name in ema_buffers:
                    ema_buffers[name].copy_(buf)
        self.num_updates += 1

    def forward(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        """Run the averaged copy."""
        return self.module(*args, **kwargs)
