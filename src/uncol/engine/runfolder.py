"""Run folders are never silently reused (docs/reliability.md, rule 2).

A folder *holds a run* when any of :data:`RUN_FILES` is in it. Training into such a folder needs
``resume`` (continue from ``last.pt`` with the run's own config) or ``overwrite`` (the run's files are
deleted first, once every check has passed). A resumed run's config must equal the one recorded in
``config.yaml``; a difference is an error listing the keys, except that ``extend`` lets the schedule
change (``train.iterations`` and the method's stage lengths) and :data:`RUNTIME_KEYS` (where and how
fast it runs, not what it learns) may change freely. Both kinds of change are recorded in ``run.json``::

    {"config_file": "configs/x.yaml", "set": ["train.iterations=100"], "notes": [...],
     "history": [{"event": "start" | "resume", "time": ..., "host": ..., "pid": ..., "changes": {key: [old, new]}}]}

``uncol train --out RUN --resume`` rebuilds the config from ``RUN/config.yaml`` (:func:`resume_config`).
"""
from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from uncol.config import Config, from_dict, load_config, to_dict
from uncol.engine.checkpoint import check_finite_state, load_checkpoint
from uncol.errors import CheckpointError, ConfigError, DataError
from uncol.methods import METHODS
from uncol.methods.base import plan_stages, stage_iteration_keys
from uncol.runtime import atomic_write_json

#: Files whose presence makes a folder a run folder (``uncol train`` writes them).
RUN_FILES = ("config.yaml", "run.json", "split.json", "log.jsonl", "last.pt", "best.pt", "final.pt", "summary.json")
#: Keys a resumed run may change without ``--extend``: they decide where it runs, not what it learns.
RUNTIME_KEYS = ("train.device", "train.threads", "data.num_workers", "teacher.cache_dir")
RECORD = "run.json"


def holds_run(out: Path) -> list[str]:
    """The :data:`RUN_FILES` present in ``out`` (empty: not a run folder)."""
    return [n for n in RUN_FILES if (Path(out) / n).is_file()]


def check_run_folder(cfg: Config, out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse (one line) to train into ``data.root`` or into a folder holding a run without resume/overwrite."""
    out = Path(out)
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: --resume continues the run in --out, "
                          "--overwrite replaces it; pick one")
    if cfg.data.root:
        root, target = Path(cfg.data.root).resolve(), out.resolve()
        if target == root or root in target.parents:
            raise DataError(f"output folder {str(out)!r} is inside the dataset folder data.root={cfg.data.root!r}; "
                            "inputs are never written: choose an --out outside it")
    found = holds_run(out)
    if found and not (resume or overwrite):
        raise ConfigError(f"output folder {str(out)!r} already holds a run ({', '.join(found)}); continue it with "
                          "--resume, replace it with --overwrite, or choose another --out")


def clear_run(out: Path) -> None:
    """Delete what ``uncol train`` wrote in ``out`` (``--overwrite``): :data:`RUN_FILES`, ``best_*.pt``,
    ``tensorboard/``. Other files (an ``eval/`` folder written by ``uncol evaluate``) are kept."""
    out = Path(out)
    for p in [*(out / n for n in RUN_FILES), *out.glob("best_*.pt")]:
        p.unlink(missing_ok=True)
    shutil.rmtree(out / "tensorboard", ignore_errors=True)


# ------------------------------------------------------------------------------------ the run's config
def resume_config(config: str | Path | None, out: Path, overrides: list[str], notes: list[str] | None = None) -> Config:
    """The config ``uncol train [CONFIG] --out RUN --resume [--set ...]`` asks for.

    Without ``CONFIG``: ``RUN/config.yaml`` (the run's resolved config) with ``overrides``. With it: the
    file with the ``--set`` list recorded in ``RUN/run.json`` and then ``overrides``, so that repeating
    the original command with ``--resume`` gives the run's own config.
    """
    own = Path(out) / "config.yaml"
    if config is None:
        if not own.is_file():
            raise ConfigError(f"--resume: {str(out)!r} holds no run to continue (no config.yaml); "
                              "give a CONFIG to start one")
        return load_config(own, overrides, notes)
    return load_config(config, [*read_record(out).get("set", []), *overrides], notes)


def _normalised(cfg: Config) -> dict[str, Any]:
    """``cfg`` as a flat ``{dotted key: value}`` dict, component params with their defaults filled in."""
    d = to_dict(cfg)
    try:
        method_cls = METHODS.get(cfg.method.name)
        d["method"]["params"] = to_dict(from_dict(method_cls.Params, cfg.method.params, prefix="method.params"))
    except (ConfigError, KeyError):
        pass  # check_config reports it
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            flat[prefix] = node

    walk(d, "")
    return flat


def config_changes(old: Config, new: Config) -> dict[str, list[Any]]:
    """``{dotted key: [old value, new value]}`` for every resolved key that differs."""
    a, b = _normalised(old), _normalised(new)
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def schedule_keys(cfg: Config) -> set[str]:
    """The keys ``--extend`` may change: ``train.iterations`` and the method's stage lengths."""
    keys = {"train.iterations"}
    try:
        keys |= {f"method.params.{k}" for k in stage_iteration_keys(METHODS.get(cfg.method.name).Params)}
    except KeyError:
        pass
    return keys


def recorded_config(out: Path) -> Config | None:
    """The config the run in ``out`` was made with (``config.yaml``), None when there is none."""
    own = Path(out) / "config.yaml"
    return load_config(own) if own.is_file() else None


def check_resume_config(cfg: Config, out: Path, extend: bool) -> dict[str, list[Any]]:
    """The changes of ``cfg`` against the run's recorded config; raise unless they are allowed."""
    old = recorded_config(out)
    if old is None:
        return {}
    changes = config_changes(old, cfg)
    allowed = set(RUNTIME_KEYS) | (schedule_keys(old) if extend and old.method.name == cfg.method.name else set())
    bad = [k for k in changes if k not in allowed]
    if bad:
        shown = "; ".join(f"{k}: {changes[k][0]!r} -> {changes[k][1]!r}" for k in bad[:6])
        more = f" and {len(bad) - 6} more" if len(bad) > 6 else ""
        only_schedule = set(bad) <= schedule_keys(old) and not extend
        fix = ("add --extend to change the schedule" if only_schedule else
               "resume with the run's own config (uncol train --out RUN --resume, no CONFIG or --set), "
               "or train into a new --out")
        raise ConfigError(f"--resume: the config differs from the run's own ({str(Path(out) / 'config.yaml')!r}) in "
                          f"{len(bad)} keys: {shown}{more}; {fix}")
    return changes


# ------------------------------------------------------------------------------------- the checkpoint
def resume_checkpoint(out: Path, resume: bool) -> dict[str, Any] | None:
    """``out/last.pt`` when resuming (read, and its weights checked, before anything is written), else None."""
    if not resume:
        return None
    path = Path(out) / "last.pt"
    if not path.is_file():
        what = "starting the run from scratch" if holds_run(out) else "starting from scratch"
        print(f"note: --resume but {str(path)!r} does not exist; {what}", file=sys.stderr)
        return None
    ckpt = load_checkpoint(path)
    for key in ("method", "optimizer", "stage_index", "iteration", "rng", "loader", "best"):
        if key not in ckpt:
            raise CheckpointError(f"checkpoint {str(path)!r} has no {key!r}: it is not a training checkpoint "
                                  "(best.pt/final.pt hold weights only); resume from last.pt")
    check_finite_state(ckpt["method"], path)
    return ckpt


def extend_schedule(ck: dict[str, Any], old: Config, new: Config, path: Path) -> None:
    """Move ``ck``'s position for a changed schedule (``--extend``), in place.

    Finished stages keep their length. A stage that had just finished when ``ck`` was saved (iteration 0
    of the next) and is now longer is reopened at its old end; the current stage may not become shorter
    than what it has run.
    """
    cls = METHODS.get(new.method.name)
    before = plan_stages(cls, old, from_dict(cls.Params, old.method.params, prefix="method.params"))
    after = plan_stages(cls, new, from_dict(cls.Params, new.method.params, prefix="method.params"))
    si, it = int(ck["stage_index"]), int(ck["iteration"])
    for i, (a, b) in enumerate(zip(before, after)):
        if a.iterations == b.iterations:
            continue
        done = i < si - 1 or (i == si - 1 and it > 0)
        if done or (i == si - 1 and b.iterations < a.iterations):
            raise ConfigError(f"--extend: stage {a.name!r} of {str(path)!r} has finished its {a.iterations} "
                              f"iterations; only the current and later stages can change length")
        if i == si - 1:
            ck["stage_index"], ck["iteration"] = i, a.iterations  # reopen the stage that just ended
            si, it = i, a.iterations
        elif i == si and 0 < it and b.iterations <= it:
            raise ConfigError(f"--extend: stage {a.name!r} of {str(path)!r} has already run {it} iterations; "
                              f"give it more than {it}")


# ---------------------------------------------------------------------------------------- run.json
def read_record(out: Path) -> dict[str, Any]:
    """``out/run.json`` (``{}`` when absent or unreadable: a run from before it existed)."""
    import json

    p = Path(out) / RECORD
    try:
        rec = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}
    except (OSError, ValueError):
        return {}
    return rec if isinstance(rec, dict) else {}


def record_event(out: Path, event: str, origin: dict[str, Any] | None, changes: dict[str, list[Any]]) -> None:
    """Append a ``start``/``resume`` entry to ``out/run.json``; a start also records ``origin``
    (``config_file``, ``set``, ``notes``: how to rebuild the config)."""
    rec = read_record(out) if event == "resume" else {}
    if event == "start":
        rec.update({k: v for k, v in (origin or {}).items() if k in ("config_file", "set", "notes")})
        rec.setdefault("set", [])
    entry = {"event": event, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": socket.gethostname(),
             "pid": os.getpid()}
    if changes:
        entry["changes"] = changes
    if event == "resume" and origin and origin.get("notes"):
        entry["notes"] = origin["notes"]
    rec["history"] = [*rec.get("history", []), entry]
    atomic_write_json(Path(out) / RECORD, rec)


def completed_summary(out: Path, ck: dict[str, Any] | None, selected: list[int]) -> dict[str, Any] | None:
    """The run's ``summary.json`` when ``--resume`` finds every selected stage (indices) finished, else None:
    a finished run is not rewritten (its checkpoints, config and summary stay as they are)."""
    import json

    summary = Path(out) / "summary.json"
    if ck is None or not summary.is_file() or any(pi >= ck["stage_index"] for pi in selected):
        return None
    print(f"note: the run in {str(out)!r} is complete; nothing to resume (add --extend --set train.iterations=N "
          "to train longer)", file=sys.stderr)
    return json.loads(summary.read_text(encoding="utf-8"))
