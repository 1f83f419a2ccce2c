"""A run that cannot have learned is not a success (docs/reliability.md, rule 4).

The loop stops at the first non-finite loss, before it reaches the weights, and never saves
non-finite weights; both end in :class:`~uncol.errors.TrainingError` (exit status 1) saying the stage,
the iteration and what to check. Data that leaves nothing to learn is refused before training
(:func:`uncol.engine.setup.check_learnable`).
"""
from __future__ import annotations

from pathlib import Path

import torch

from uncol.config import Config
from uncol.engine.checkpoint import nonfinite_keys
from uncol.engine.distributed import DistInfo, all_reduce_mean
from uncol.errors import TrainingError


def loss_is_finite(loss: torch.Tensor, dist: DistInfo) -> bool:
    """Whether ``loss`` is finite on every rank (one all-reduce under DDP, so that all ranks stop together)."""
    finite = float(torch.isfinite(loss.detach()).all())
    if dist.enabled:
        finite = all_reduce_mean({"f": finite}, dist)["f"]
    return finite >= 1.0


def diverged(cfg: Config, out: Path, stage: str, it: int, what: str, lr: float) -> TrainingError:
    """The one-line error for a run stopped at iteration ``it`` (0-based) of ``stage``."""
    return TrainingError(
        f"training stopped at stage {stage!r} iteration {it + 1}: {what}; nothing from this step was saved "
        f"({str(Path(out) / 'last.pt')!r} holds the last finite state, if any); check train.lr (now {lr:g}), "
        f"the data normalisation (data.normalize: {cfg.data.normalize}) and the images and labels")


def nonfinite_weights(state: dict) -> str | None:
    """``"the weights became non-finite (...)"`` when ``state`` holds a NaN/inf tensor, else None."""
    bad = nonfinite_keys(state)
    return f"the weights became non-finite ({len(bad)} tensors, e.g. {bad[0]})" if bad else None
