"""The one training loop that UnCoL and every baseline share.

:class:`Trainer` reads top to bottom as named steps (nnU-Net's trainer style): :meth:`Trainer.run` =
set up → for each stage of the method: :meth:`~Trainer.start_stage` → for each iteration
:meth:`~Trainer.train_iteration` (batch → method.train_step through DDP when distributed → backward →
optimiser step → method.after_step) → :meth:`~Trainer.log` / :meth:`~Trainer.validate` /
:meth:`~Trainer.save_state` → :meth:`~Trainer.end_stage` → :meth:`~Trainer.finish`.

Checkpoint selection: each stage keeps its own best validation checkpoint. The last stage run writes
``best.pt`` (the reported model: never an earlier stage's), each earlier stage ``best_<stage>.pt``;
when the last stage does not validate, ``best.pt`` is its final model. ``summary.json`` says which
stage ``best`` came from and lists every stage's best.

Resume restores everything (weights, EMA, optimiser, loss scaler, RNGs including the
method's own ``torch.Generator`` attributes, sampler position, stage, iteration) from ``last.pt``.

Distributed (``torchrun``): every rank builds the same method from the same seed, DDP averages the
gradients of the method's trainable parameters, so every rank takes the same optimiser step and
``after_step`` (the EMA update) sees the same synchronised student. Each rank draws its share of
every global batch (see :class:`~uncol.data.sampler.TwoStreamLoader`); logged scalars are averaged
over ranks; validation and every file write happen on rank 0 only.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from uncol.config import Config, save_config, to_dict
from uncol.engine.checkpoint import (
    generator_states,
    load_state_strict,
    rng_state,
    save_checkpoint,
    set_generator_states,
    set_rng_state,
)
from uncol.engine.distributed import DistInfo, all_reduce_mean, barrier, wrap_ddp
from uncol.engine.guards import diverged, loss_is_finite, nonfinite_weights
from uncol.engine.logger import ScalarLogger
from uncol.engine.runfolder import (
    check_resume_config,
    check_run_folder,
    completed_summary,
    extend_schedule,
    read_record,
    record_event,
    recorded_config,
    resume_checkpoint,
)
from uncol.engine.setup import RunContext, build_run
from uncol.errors import CheckpointError
from uncol.methods.base import StagePlan
from uncol.runtime import atomic_write_json
from uncol.schedules import poly_lr


def make_optimizer(cfg: Config, params: Any) -> torch.optim.Optimizer:
    t = cfg.train
    return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)


def _training_state(run: RunContext, method: nn.Module, optimizer: torch.optim.Optimizer, loader: Any,
                    stage_index: int, stage: str, iteration: int, state: dict, dist: DistInfo) -> dict[str, Any]:
    """Everything ``--resume`` needs; plain tensors and builtins (``weights_only`` loadable). ``best`` is
    the current stage's best, ``stage_bests`` those of the finished stages."""
    return {**run.model_checkpoint(method), "method": method.state_dict(), "optimizer": optimizer.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler is not None else None,
            "stage_index": stage_index, "stage": stage, "iteration": iteration,
            "rng": rng_state(), "generators": generator_states(method), "loader": loader.state_dict(),
            "best": state["best"], "stage_bests": state["stage_bests"], "world_size": dist.world_size}


def _new_best(stage: str) -> dict[str, Any]:
    return {"metric": -math.inf, "iteration": -1, "stage": stage}


def _reported(best: dict[str, Any], file: str) -> dict[str, Any]:
    """``best`` for the summary: a non-finite metric (never validated) becomes None; the file it was written to."""
    return {**best, "metric": best["metric"] if math.isfinite(best["metric"]) else None, "file": file}


class Trainer:
    """One training run of ``cfg.method`` into ``out``; see the module docstring for the order of the steps."""

    def __init__(self, cfg: Config, out: Path, resume: bool, stages: list[str] | None, progress: bool,
                 dist: DistInfo, stop_after: int | None, overwrite: bool = False, extend: bool = False,
                 origin: dict[str, Any] | None = None) -> None:
        self.cfg, self.out, self.dist, self.stop_after = cfg, Path(out), dist, stop_after
        self.is_main, self.resume, self.origin = dist.rank == 0, resume, origin
        # the run folder's rules (docs/reliability.md, rule 2), checked by every rank before any rank writes
        check_run_folder(cfg, self.out, resume, overwrite)
        self.changes = check_resume_config(cfg, self.out, extend) if resume else {}
        self.resume_ckpt = resume_checkpoint(self.out, resume)
        barrier(dist)
        if self.resume_ckpt is not None and self.changes:
            extend_schedule(self.resume_ckpt, recorded_config(self.out) or cfg, cfg, self.out / "last.pt")
        self.run_ctx: RunContext = build_run(cfg, self.out, dist=dist, resume=resume, stages=stages,
                                             overwrite=overwrite)
        self.run_ctx.progress = progress and self.is_main
        self.method = self.run_ctx.method
        self.plan = self.method.stages()
        self.selected = [(pi, s) for pi, s in enumerate(self.plan) if stages is None or s.name in stages]
        # best of the current stage, and of every stage finished so far (by name)
        self.state: dict[str, Any] = {"stage_index": 0, "iteration": 0, "best": _new_best(""), "stage_bests": {}}
        self.done_total = 0

    # -- set up --------------------------------------------------------------------------------------
    def restore(self) -> None:
        """Load ``last.pt`` into the method and the loop state (``--resume``); save the config; open the log."""
        ck, out = self.resume_ckpt, self.out
        if ck is not None:
            load_state_strict(self.method, ck["method"], f"checkpoint {str(out / 'last.pt')!r}")
            if ck.get("world_size", 1) != self.dist.world_size:
                raise CheckpointError(f"checkpoint {str(out / 'last.pt')!r} was written by {ck.get('world_size', 1)} "
                                      f"processes, this run has {self.dist.world_size}; resume with the same --nproc")
            self.state.update(stage_index=ck["stage_index"], iteration=ck["iteration"], best=ck["best"],
                              stage_bests=dict(ck.get("stage_bests", {})))
        if self.is_main:
            save_config(self.cfg, out / "config.yaml")
            record_event(out, "resume" if self.resume and read_record(out) else "start", self.origin, self.changes)
        self.logger = ScalarLogger(out, enabled=self.is_main)
        if ck is not None or self.resume:  # a run resumed without last.pt starts again: its old records go
            self.logger.truncate_after([s.name for s in self.plan], self.state["stage_index"], self.state["iteration"])

    def best_file(self, stage: str) -> str:
        """``best.pt`` for the last stage run, ``best_<stage>.pt`` for the earlier ones."""
        return "best.pt" if stage == self.selected[-1][1].name else f"best_{stage}.pt"

    # -- one stage -----------------------------------------------------------------------------------
    def start_stage(self, pi: int, stage: StagePlan) -> int:
        """Begin ``stage``: method hook, DDP wrapper, optimiser, loader (restored mid-stage); the first iteration."""
        ck = self.resume_ckpt
        resuming = ck is not None and pi == ck["stage_index"]
        # a checkpoint from the end of the previous stage (iteration 0) starts this stage afresh, as the
        # uninterrupted run did: new optimiser and loader, begin_stage not "resumed" (e.g. UnCoL's EMA reset)
        mid_stage = resuming and ck["iteration"] > 0
        self.method.begin_stage(stage.name, resumed=mid_stage)
        self.method.train()
        self.model = wrap_ddp(self.method, self.dist)
        self.optimizer = make_optimizer(self.cfg, self.method.trainable_parameters())
        self.loader = self.run_ctx.make_loader(stage)
        start = 0
        if not mid_stage:
            self.state["best"] = _new_best(stage.name)
        else:
            if ck.get("stage") not in (None, stage.name):
                raise CheckpointError(f"checkpoint {str(self.out / 'last.pt')!r} stopped in stage {ck['stage']!r}, "
                                      f"but stage {pi} of this run is {stage.name!r}; resume with the same method and config")
            self.optimizer.load_state_dict(ck["optimizer"])
            self.loader.load_state_dict(ck["loader"])
            if ck.get("scaler") is not None and self.run_ctx.scaler is not None:
                self.run_ctx.scaler.load_state_dict(ck["scaler"])
            start = ck["iteration"]
        if resuming:
            set_rng_state(ck["rng"])
            set_generator_states(self.method, ck.get("generators", {}))
            self.resume_ckpt = None
        return start

    def train_iteration(self, it: int, total: int) -> tuple[float, Any]:
        """One optimiser step at iteration ``it`` of ``total``; returns the learning rate and the step output."""
        lr = poly_lr(self.cfg.train.lr, it, total, self.cfg.train.poly_power)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        batch = self.run_ctx.to_device(next(self.loader))
        with self.run_ctx.autocast():
            out_step = self.model(batch, it, total)  # Method.forward is train_step; DDP syncs the gradients
        self.check_finite(out_step.loss, it, lr)
        self.optimizer.zero_grad(set_to_none=True)
        self.run_ctx.backward(out_step.loss, self.optimizer)
        self.method.after_step(it, total)  # on the unwrapped method: the EMA sees the synchronised student
        self.done_total += 1
        return lr, out_step

    def check_finite(self, loss: torch.Tensor, it: int, lr: float) -> None:
        """Stop (:class:`TrainingError`, exit status 1) at a non-finite loss, before it reaches the weights."""
        if not loss_is_finite(loss, self.dist):
            value = float(loss.detach().float().mean())
            self.logger.log(it + 1, self.method.stage, {"loss": value}, kind="diverged")
            raise diverged(self.cfg, self.out, self.method.stage, it, f"the loss is {value}", lr)

    def guard_weights(self, it: int) -> None:
        """Never save non-finite weights: stop instead (:class:`TrainingError`)."""
        what = nonfinite_weights(self.method.state_dict())
        if what:
            lr = self.optimizer.param_groups[0]["lr"] if hasattr(self, "optimizer") else self.cfg.train.lr
            raise diverged(self.cfg, self.out, self.method.stage, it, what, lr)

    def log(self, it: int, stage: StagePlan, lr: float, out_step: Any, bar: Any) -> None:
        parts = all_reduce_mean(out_step.parts, self.dist)
        self.logger.log(it + 1, stage.name, {"lr": lr, **parts})
        bar.set_postfix(loss=f"{parts.get('loss', float('nan')):.3f}")

    def validate(self, it: int, stage: StagePlan, last_it: bool) -> None:
        """Score the model (rank 0; the method's ``validate`` hook, else the prompt-free default); keep the
        stage's best checkpoint."""
        if self.is_main:
            run = self.run_ctx
            metrics = self.method.validate(run) or run.validate(self.method.inference_model())
            self.method.train()  # inference switched the student to eval mode
            self.logger.log(it + 1, stage.name, metrics, kind="val")
            best = self.state["best"]
            self.guard_weights(it)
            if metrics["dice"] > best["metric"] or (last_it and best["iteration"] < 0):
                self.state["best"] = {"metric": metrics["dice"], "iteration": it + 1, "stage": stage.name}
                self.state["stage_bests"][stage.name] = self.state["best"]
                save_checkpoint(run.model_checkpoint(self.method), self.out / self.best_file(stage.name))
        barrier(self.dist)

    def save_state(self, pi: int, stage: StagePlan, it: int, last_it: bool) -> None:
        """``last.pt``: everything ``--resume`` needs (rank 0)."""
        if self.is_main:
            self.guard_weights(it)
            save_checkpoint(_training_state(self.run_ctx, self.method, self.optimizer, self.loader,
                                            pi + 1 if last_it else pi, stage.name, 0 if last_it else it + 1,
                                            self.state, self.dist), self.out / "last.pt")

    def end_stage(self, pi: int, stage: StagePlan) -> None:
        del self.model  # drop DDP's gradient hooks before the next stage wraps the method again
        self.state["stage_index"] = pi + 1

    def run_stage(self, pi: int, stage: StagePlan) -> dict[str, Any] | None:
        """All iterations of one stage; a summary when ``stop_after`` cut the run short, else None."""
        cfg, T = self.cfg, stage.iterations
        start = self.start_stage(pi, stage)
        with tqdm(range(start, T), desc=f"{cfg.method.name}:{stage.name}", disable=not self.run_ctx.progress,
                  dynamic_ncols=True, initial=start, total=T) as bar:  # closed on errors too: the error line stays alone
            for it in bar:
                lr, out_step = self.train_iteration(it, T)
                last_it = it + 1 == T
                if (it + 1) % cfg.train.log_every == 0 or last_it:
                    self.log(it, stage, lr, out_step, bar)
                if self.run_ctx.has_val and ((it + 1) % cfg.train.val_every == 0 or last_it):
                    self.validate(it, stage, last_it)
                if (it + 1) % cfg.train.save_every == 0 or last_it:
                    self.save_state(pi, stage, it, last_it)
                if self.stop_after is not None and self.done_total >= self.stop_after:
                    self.logger.close()
                    return {"stopped_at": it + 1, "stage": stage.name}
        self.end_stage(pi, stage)
        return None

    def finish(self, t0: float) -> dict[str, Any]:
        """``best.pt`` (the last stage's final model when it did not validate), ``final.pt``, ``summary.json``."""
        run, last = self.run_ctx, self.selected[-1][1].name
        best = self.state["stage_bests"].get(last)
        if self.is_main:
            self.guard_weights(self.selected[-1][1].iterations - 1)
            if best is None:
                save_checkpoint(run.model_checkpoint(self.method), self.out / "best.pt")
            save_checkpoint(run.model_checkpoint(self.method), self.out / "final.pt")
        self.logger.close()
        final_it = self.selected[-1][1].iterations
        reported = _reported(best or {"metric": -math.inf, "iteration": final_it, "stage": last}, "best.pt")
        summary = {"out_dir": str(self.out), "method": self.cfg.method.name, "best": reported,
                   "stage_bests": {s: _reported(b, self.best_file(s)) for s, b in self.state["stage_bests"].items()},
                   "wall_time_s": round(time.time() - t0, 1), "world_size": self.dist.world_size,
                   "config": to_dict(self.cfg)}
        if self.is_main:
            atomic_write_json(self.out / "summary.json", summary)
        return summary

    def run(self) -> dict[str, Any]:
        done = completed_summary(self.out, self.resume_ckpt, [pi for pi, _ in self.selected])
        if done is not None:
            return done
        self.restore()
        t0 = time.time()
        for pi, stage in self.selected:
            if pi < self.state["stage_index"]:
                continue
            stopped = self.run_stage(pi, stage)
            if stopped is not None:
                return stopped
        return self.finish(t0)


def train(
    cfg: Config,
    out_dir: str | Path,
    resume: bool = False,
    stages: list[str] | None = None,
    progress: bool = True,
    dist: DistInfo | None = None,
    stop_after: int | None = None,
    overwrite: bool = False,
    extend: bool = False,
    origin: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``cfg.method`` and return a summary dict (also written to ``summary.json``).

    ``out_dir`` may not hold a run unless ``resume`` (continue from ``last.pt``; ``cfg`` must equal the
    run's ``config.yaml``, or differ only in the schedule with ``extend``) or ``overwrite`` (its files are
    deleted first); see :mod:`uncol.engine.runfolder`. ``origin`` (``config_file``, ``set``, ``notes``) is
    recorded in ``run.json``. ``stages`` restricts which of the method's stages run (``uncol train
    --stage``); ``stop_after`` stops after that many iterations in total (used by tests to simulate a crash).
    A non-finite loss or weights stop the run with :class:`~uncol.errors.TrainingError`.
    """
    return Trainer(cfg, Path(out_dir), resume, stages, progress, dist or DistInfo(), stop_after, overwrite,
                   extend, origin).run()
