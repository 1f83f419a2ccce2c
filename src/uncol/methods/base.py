"""The method interface: a small object the one training loop (``uncol.engine``) drives.

A method owns the student and whatever else it trains or keeps (EMA teacher, projectors) and may hold a
frozen generalized teacher. The loop asks it for its stages, gives it batches, steps the optimiser and
calls :meth:`Method.after_step`. ``train_step`` returns the loss and its named parts. The engine calls
every hook declared here unconditionally (:meth:`attach_run`, :meth:`begin_stage`, :meth:`after_step`,
:meth:`validates`, :meth:`validate`); the defaults do nothing.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from uncol.config import Config
from uncol.registry import Registry


@dataclass
class StepOutput:
    """The loss to back-propagate and its named parts (floats, for logs)."""

    loss: torch.Tensor
    parts: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StagePlan:
    """One stage of training: its name, iterations and batch composition."""

    name: str
    iterations: int
    labeled_bs: int
    unlabeled_bs: int = 0


@dataclass
class MethodContext:
    """What a method is built from."""

    cfg: Config
    model: nn.Module
    teacher: nn.Module | None
    num_classes: int
    spatial_dims: int


class Method(nn.Module):
    """Base class. Subclasses set ``Params`` (a dataclass validated from ``method.params`` when the config is
    checked, ``uncol.engine.setup.check_config``)."""

    Params: type = object
    needs_teacher: bool = False
    uses_model_config: bool = True  # False: the trained network is not ``config.model`` (fine-tuned SAM)

    def __init__(self, ctx: MethodContext, params: Any) -> None:
        super().__init__()
        self.cfg = ctx.cfg
        self.params = params
        self.student = ctx.model
        self.num_classes = ctx.num_classes
        self.spatial_dims = ctx.spatial_dims
        # Frozen teachers are kept outside the module tree: no state_dict entries, no DDP, no optimiser.
        self._teacher = [ctx.teacher] if ctx.teacher is not None else []
        self.stage = self.stages()[0].name

    @property
    def teacher(self) -> nn.Module | None:
        return self._teacher[0] if self._teacher else None

    def stages(self) -> list[StagePlan]:
        """The stages in order. Reads only ``self.cfg`` and ``self.params`` (:func:`plan_stages` relies on it);
        a stage length set by ``Params`` is a field named ``<stage>_iterations`` (0 = ``train.iterations``)."""
        t = self.cfg.train
        return [StagePlan("main", t.iterations, t.batch_size, 0)]

    # -- hooks the engine calls (defaults: nothing to do) ------------------------------------------
    def attach_run(self, run: Any) -> None:
        """Called once by the engine after the run is built (datasets, device, split), before any stage.

        ``run`` is the engine's ``RunContext`` (``labeled_ds``, ``unlabeled_ds``, ``spec``, ``progress``, ...);
        e.g. UnCoL fills the teacher feature cache from its datasets here."""

    def validates(self) -> bool:
        """Whether the engine validates this method during training (False: ``best.pt`` = the final model)."""
        return True

    def validate(self, run: Any) -> dict[str, float] | None:
        """Validation metrics of the current model (``dice`` among them), called on rank 0 at each
        validation point; None (the default) lets the engine score :meth:`inference_model` prompt-free on
        the run's validation cases (``run.validate``)."""
        return None

    def begin_stage(self, name: str, resumed: bool = False) -> None:
        """Called by the loop before the first step of stage ``name``; ``resumed`` when its state came from a checkpoint."""
        self.stage = name

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return (p for p in self.parameters() if p.requires_grad)

    def train_step(self, batch: Any, it: int, total: int) -> StepOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, batch: Any, it: int, total: int) -> StepOutput:
        """``forward`` is ``train_step`` so that DistributedDataParallel can wrap the method."""
        return self.train_step(batch, it, total)

    def after_step(self, it: int, total: int) -> None:
        """Hook after each optimiser step (EMA updates live here)."""

    def inference_model(self) -> nn.Module:
        """The network ``evaluate``/``predict`` run: ``forward(x (B,C,*S)) -> logits (B,K,*S)``."""
        return self.student


METHODS: Registry[type[Method]] = Registry("method")


def stage_iteration_keys(params_cls: type) -> tuple[str, ...]:
    """The stage lengths among a method's ``Params`` fields: those named ``<stage>_iterations`` (0 meaning
    ``train.iterations``), e.g. UnCoL's ``stage1_iterations``/``stage2_iterations``. ``--set
    train.iterations`` rescales them (:mod:`uncol.config_overrides`); ``--resume --extend`` may change them."""
    if not dataclasses.is_dataclass(params_cls):
        return ()
    return tuple(f.name for f in dataclasses.fields(params_cls) if f.name.endswith("_iterations"))


def plan_stages(method_cls: type[Method], cfg: Config, params: Any) -> list[StagePlan]:
    """``method_cls``'s stages for ``cfg`` and its validated ``params``, without building the method."""
    return method_cls.stages(SimpleNamespace(cfg=cfg, params=params))  # type: ignore[arg-type]
