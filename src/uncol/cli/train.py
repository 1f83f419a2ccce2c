"""``uncol train CONFIG --out RUN``: train a method from a YAML config (``--resume``: continue RUN)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train a method from a YAML config")
    t.add_argument("config", nargs="?", default=None,
                   help="YAML config (see configs/); optional with --resume, which uses the run's own config")
    t.add_argument("--out", required=True, help="run folder (config, split, logs, checkpoints)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. train.iterations=100 (repeatable)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in OUT from OUT/last.pt with its own config (a differing key is an error)")
    t.add_argument("--overwrite", action="store_true",
                   help="OUT holds a run: delete its files (checkpoints, logs, split, config) and start again")
    t.add_argument("--extend", action="store_true",
                   help="with --resume: let train.iterations and the method's stage lengths change (recorded in OUT/run.json)")
    t.add_argument("--stage", action="append", default=None, help="run only this stage (repeatable), e.g. stage1")
    t.add_argument("--nproc", type=int, default=1, help="processes for distributed training (launches torchrun)")
    t.set_defaults(func=run)


def run(a: argparse.Namespace) -> int:
    from uncol.config import load_config
    from uncol.engine import train_argv, train_entry
    from uncol.engine.runfolder import resume_config
    from uncol.errors import ConfigError

    if a.extend and not a.resume:
        raise ConfigError("--extend changes the schedule of a run being resumed; add --resume")
    notes: list[str] = []
    if a.resume:
        cfg = resume_config(a.config, Path(a.out), a.set, notes)
    elif a.config is None:
        raise ConfigError("uncol train needs a CONFIG (a YAML file such as configs/hc18_2d_uncol.yaml), "
                          "or --resume to continue the run in --out")
    else:
        cfg = load_config(a.config, a.set, notes)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    argv = train_argv(a.config, a.out, a.set, resume=a.resume, stages=a.stage, overwrite=a.overwrite, extend=a.extend)
    origin = {"config_file": a.config, "set": list(a.set), "notes": notes}
    summary = train_entry(cfg, Path(a.out), resume=a.resume, stages=a.stage, nproc=a.nproc, argv=argv,
                          overwrite=a.overwrite, extend=a.extend, origin=origin)
    if summary is not None:
        print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))
    return 0
