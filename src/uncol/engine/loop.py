"""The one training loop that UnCoL and every baseline share.

Reads top to bottom: set up → for each stage of the method: for each iteration: batch → method.train_step →
backward → optimiser step → method.after_step → log / validate / checkpoint. Resume restores everything
(weights, EMA, optimiser, RNG, sampler position, stage, iteration) from ``last.pt``.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from uncol.config import Config, save_config, to_dict
from uncol.engine.checkpoint import load_checkpoint, load_state_strict, rng_state, save_checkpoint, set_rng_state
from uncol.engine.distributed import DistInfo, all_reduce_mean, wrap_ddp
from uncol.engine.io import atomic_write_json
from uncol.engine.logger import ScalarLogger
from uncol.engine.setup import RunContext, build_run
from uncol.errors import UncolError
from uncol.pseudo.schedules import poly_lr


def make_optimizer(cfg: Config, params: Any) -> torch.optim.Optimizer:
    t = cfg.train
    return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)


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
    run: RunContext = build_run(cfg, out, dist=dist, resume=resume)
    method = run.method
    is_main = dist.rank == 0
    if is_main:
        save_config(cfg, out / "config.yaml")
    logger = ScalarLogger(out, enabled=is_main)

    plan = method.stages()
    selected = [s for s in plan if stages is None or s.name in stages]
    if stages is not None and not selected:
        raise UncolError(f"--stage {stages}: method {cfg.method.name!r} has stages {[s.name for s in plan]}; pick one of those")

    state = {"stage_index": 0, "iteration": 0, "best": {"metric": -math.inf, "iteration": -1, "stage": ""}}
    resume_ckpt = None
    if resume and (out / "last.pt").is_file():
        resume_ckpt = load_checkpoint(out / "last.pt")
        load_state_strict(method, resume_ckpt["method"], f"checkpoint {str(out / 'last.pt')!r}")
        state.update(stage_index=resume_ckpt["stage_index"], iteration=resume_ckpt["iteration"], best=resume_ckpt["best"])

    t0 = time.time()
    done_total = 0
    for si, stage in enumerate(selected):
        if si < state["stage_index"]:
            continue
        method.begin_stage(stage.name, resumed=resume_ckpt is not None and si == state["stage_index"])
        model = wrap_ddp(method, dist)
        optimizer = make_optimizer(cfg, method.trainable_parameters())
        loader = run.make_loader(stage)
        start = 0
        if resume_ckpt is not None and si == resume_ckpt["stage_index"]:
            optimizer.load_state_dict(resume_ckpt["optimizer"])
            loader.load_state_dict(resume_ckpt["loader"])
            set_rng_state(resume_ckpt["rng"])
            start = resume_ckpt["iteration"]
            resume_ckpt = None
        T = stage.iterations
        bar = tqdm(range(start, T), desc=f"{cfg.method.name}:{stage.name}", disable=not (progress and is_main),
                   dynamic_ncols=True, initial=start, total=T)
        for it in bar:
            lr = poly_lr(cfg.train.lr, it, T, cfg.train.poly_power)
            for g in optimizer.param_groups:
                g["lr"] = lr
            batch = run.to_device(next(loader))
            with run.autocast():
                out_step = model(batch, it, T) if dist.world_size > 1 else method.train_step(batch, it, T)
            optimizer.zero_grad(set_to_none=True)
            run.backward(out_step.loss, optimizer)
            method.after_step(it, T)
            done_total += 1
            if (it + 1) % cfg.train.log_every == 0 or it + 1 == T:
                parts = all_reduce_mean(out_step.parts, dist)
                logger.log(it + 1, stage.name, {"lr": lr, **parts})
                bar.set_postfix(loss=f"{parts.get('loss', float('nan')):.3f}")
            last_it = it + 1 == T
            if run.has_val and ((it + 1) % cfg.train.val_every == 0 or last_it):
                metrics = run.validate(method.inference_model())
                if is_main:
                    logger.log(it + 1, stage.name, metrics, kind="val")
                    score = metrics["dice"]
                    if score > state["best"]["metric"] or (last_it and si == len(selected) - 1 and state["best"]["iteration"] < 0):
                        state["best"] = {"metric": score, "iteration": it + 1, "stage": stage.name}
                        save_checkpoint(run.model_checkpoint(method), out / "best.pt")
            if is_main and ((it + 1) % cfg.train.save_every == 0 or last_it):
                save_checkpoint(
                    {**run.model_checkpoint(method), "method": method.state_dict(), "optimizer": optimizer.state_dict(),
                     "stage_index": si if not last_it else si + 1, "iteration": it + 1 if not last_it else 0,
                     "rng": rng_state(), "loader": loader.state_dict(), "best": state["best"]},
                    out / "last.pt",
                )
            if stop_after is not None and done_total >= stop_after:
                bar.close()
                return {"stopped_at": it + 1, "stage": stage.name}
        bar.close()
        state["stage_index"] = si + 1
    if is_main:
        if not run.has_val or state["best"]["iteration"] < 0:
            save_checkpoint(run.model_checkpoint(method), out / "best.pt")
        save_checkpoint(run.model_checkpoint(method), out / "final.pt")
    logger.close()
    summary = {"out_dir": str(out), "method": cfg.method.name, "best": state["best"],
               "wall_time_s": round(time.time() - t0, 1), "world_size": dist.world_size,
               "config": to_dict(cfg)}
    if is_main:
        atomic_write_json(out / "summary.json", summary)
    return summary
