"""The one training loop that UnCoL and every baseline share.

Reads top to bottom: set up → for each stage of the method: for each iteration: batch → method.train_step
(through DDP when distributed) → backward → optimiser step → method.after_step → log / validate /
checkpoint. Resume restores everything (weights, EMA, optimiser, loss scaler, RNGs including the
method's own ``torch.Generator`` attributes, sampler position, stage, iteration) from ``last.pt``.

Distributed (``torchrun``): every rank builds the same method from the same seed, DDP averages the
gradients of the method's trainable parameters, so every rank takes the same optimiser step and
``after_step`` (the EMA update) sees the same synchronised student. Each rank draws its share of
every global batch (see :class:`~uncol.data.sampler.TwoStreamLoader`); logged scalars are averaged
over ranks; validation and every file write happen on rank 0 only.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from uncol.config import Config, save_config, to_dict
from uncol.engine.checkpoint import (
    generator_states,
    load_checkpoint,
    load_state_strict,
    rng_state,
    save_checkpoint,
    set_generator_states,
    set_rng_state,
)
from uncol.engine.distributed import DistInfo, all_reduce_mean, barrier, wrap_ddp
from uncol.engine.logger import ScalarLogger
from uncol.engine.setup import RunContext, build_run
from uncol.errors import CheckpointError
from uncol.pseudo.schedules import poly_lr
from uncol.runtime import atomic_write_json


def make_optimizer(cfg: Config, params: Any) -> torch.optim.Optimizer:
    t = cfg.train
    return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)


def _resume_checkpoint(out: Path, resume: bool) -> dict[str, Any] | None:
    """``out/last.pt`` when resuming (read before anything is written), else None."""
    if not resume:
        return None
    path = out / "last.pt"
    if not path.is_file():
        print(f"note: --resume but {str(path)!r} does not exist; starting from scratch", file=sys.stderr)
        return None
    ckpt = load_checkpoint(path)
    for key in ("method", "optimizer", "stage_index", "iteration", "rng", "loader", "best"):
        if key not in ckpt:
            raise CheckpointError(f"checkpoint {str(path)!r} has no {key!r}: it is not a training checkpoint "
                                  "(best.pt/final.pt hold weights only); resume from last.pt")
    return ckpt


def _training_state(run: RunContext, method: nn.Module, optimizer: torch.optim.Optimizer, loader: Any,
                    stage_index: int, stage: str, iteration: int, best: dict, dist: DistInfo) -> dict[str, Any]:
    """Everything ``--resume`` needs; plain tensors and builtins (``weights_only`` loadable)."""
    return {**run.model_checkpoint(method), "method": method.state_dict(), "optimizer": optimizer.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler is not None else None,
            "stage_index": stage_index, "stage": stage, "iteration": iteration,
            "rng": rng_state(), "generators": generator_states(method), "loader": loader.state_dict(),
            "best": best, "world_size": dist.world_size}


def train(
    cfg: Config,
    out_dir: str | Path,
    resume: bool = False,
    stages: list[str] | None = None,
    progress: bool = True,
    dist: DistInfo | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train ``cfg.method`` and return a summary dict (also written to ``summary.json``).

    ``stages`` restricts which of the method's stages run (``uncol train --stage``); ``stop_after``
    stops after that many iterations in total (used by tests to simulate a crash).
    """
    dist = dist or DistInfo()
    out = Path(out_dir)
    is_main = dist.rank == 0
    resume_ckpt = _resume_checkpoint(out, resume)
    run: RunContext = build_run(cfg, out, dist=dist, resume=resume_ckpt is not None, stages=stages)
    run.progress = progress and is_main
    method = run.method
    plan = method.stages()
    selected = [(pi, s) for pi, s in enumerate(plan) if stages is None or s.name in stages]

    state = {"stage_index": 0, "iteration": 0, "best": {"metric": -math.inf, "iteration": -1, "stage": ""}}
    if resume_ckpt is not None:
        load_state_strict(method, resume_ckpt["method"], f"checkpoint {str(out / 'last.pt')!r}")
        if resume_ckpt.get("world_size", 1) != dist.world_size:
            raise CheckpointError(f"checkpoint {str(out / 'last.pt')!r} was written by {resume_ckpt.get('world_size', 1)} "
                                  f"processes, this run has {dist.world_size}; resume with the same --nproc")
        state.update(stage_index=resume_ckpt["stage_index"], iteration=resume_ckpt["iteration"], best=resume_ckpt["best"])
    if is_main:
        save_config(cfg, out / "config.yaml")
    logger = ScalarLogger(out, enabled=is_main)
    if resume_ckpt is not None:
        logger.truncate_after([s.name for s in plan], state["stage_index"], state["iteration"])

    t0 = time.time()
    done_total = 0
    for pi, stage in selected:
        if pi < state["stage_index"]:
            continue
        resuming = resume_ckpt is not None and pi == resume_ckpt["stage_index"]
        # a checkpoint from the end of the previous stage (iteration 0) starts this stage afresh, as the
        # uninterrupted run did: new optimiser and loader, begin_stage not "resumed" (e.g. UnCoL's EMA reset)
        mid_stage = resuming and resume_ckpt["iteration"] > 0
        method.begin_stage(stage.name, resumed=mid_stage)
        method.train()
        model = wrap_ddp(method, dist)
        optimizer = make_optimizer(cfg, method.trainable_parameters())
        loader = run.make_loader(stage)
        start = 0
        if mid_stage:
            if resume_ckpt.get("stage") not in (None, stage.name):
                raise CheckpointError(f"checkpoint {str(out / 'last.pt')!r} stopped in stage {resume_ckpt['stage']!r}, "
                                      f"but stage {pi} of this run is {stage.name!r}; resume with the same method and config")
            optimizer.load_state_dict(resume_ckpt["optimizer"])
            loader.load_state_dict(resume_ckpt["loader"])
            if resume_ckpt.get("scaler") is not None and run.scaler is not None:
                run.scaler.load_state_dict(resume_ckpt["scaler"])
            start = resume_ckpt["iteration"]
        if resuming:
            set_rng_state(resume_ckpt["rng"])
            set_generator_states(method, resume_ckpt.get("generators", {}))
            resume_ckpt = None
        T = stage.iterations
        bar = tqdm(range(start, T), desc=f"{cfg.method.name}:{stage.name}", disable=not run.progress,
                   dynamic_ncols=True, initial=start, total=T)
        for it in bar:
            lr = poly_lr(cfg.train.lr, it, T, cfg.train.poly_power)
            for g in optimizer.param_groups:
                g["lr"] = lr
            batch = run.to_device(next(loader))
            with run.autocast():
                out_step = model(batch, it, T)  # Method.forward is train_step; DDP syncs the gradients
            optimizer.zero_grad(set_to_none=True)
            run.backward(out_step.loss, optimizer)
            method.after_step(it, T)  # on the unwrapped method: the EMA sees the synchronised student
            done_total += 1
            last_it = it + 1 == T
            if (it + 1) % cfg.train.log_every == 0 or last_it:
                parts = all_reduce_mean(out_step.parts, dist)
                logger.log(it + 1, stage.name, {"lr": lr, **parts})
                bar.set_postfix(loss=f"{parts.get('loss', float('nan')):.3f}")
            if run.has_val and ((it + 1) % cfg.train.val_every == 0 or last_it):
                if is_main:
                    metrics = run.validate(method.inference_model())
                    method.train()  # inference switched the student to eval mode
                    logger.log(it + 1, stage.name, metrics, kind="val")
                    score = metrics["dice"]
                    final = last_it and pi == selected[-1][0]
                    if score > state["best"]["metric"] or (final and state["best"]["iteration"] < 0):
                        state["best"] = {"metric": score, "iteration": it + 1, "stage": stage.name}
                        save_checkpoint(run.model_checkpoint(method), out / "best.pt")
                barrier(dist)
            if is_main and ((it + 1) % cfg.train.save_every == 0 or last_it):
                save_checkpoint(_training_state(run, method, optimizer, loader, pi + 1 if last_it else pi,
                                                stage.name, 0 if last_it else it + 1, state["best"], dist),
                                out / "last.pt")
            if stop_after is not None and done_total >= stop_after:
                bar.close()
                logger.close()
                return {"stopped_at": it + 1, "stage": stage.name}
        bar.close()
        del model  # drop DDP's gradient hooks before the next stage wraps the method again
        state["stage_index"] = pi + 1
    if is_main:
        if not run.has_val or state["best"]["iteration"] < 0:
            save_checkpoint(run.model_checkpoint(method), out / "best.pt")
        save_checkpoint(run.model_checkpoint(method), out / "final.pt")
    logger.close()
    best = {**state["best"], "metric": state["best"]["metric"] if math.isfinite(state["best"]["metric"]) else None}
    summary = {"out_dir": str(out), "method": cfg.method.name, "best": best,
               "wall_time_s": round(time.time() - t0, 1), "world_size": dist.world_size,
               "config": to_dict(cfg)}
    if is_main:
        atomic_write_json(out / "summary.json", summary)
    return summary

