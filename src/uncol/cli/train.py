"""``uncol train CONFIG --out RUN``: train a method from a YAML config."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train a method from a YAML config")
    t.add_argument("config", help="YAML config (see configs/)")
    t.add_argument("--out", required=True, help="run folder (config, split, logs, checkpoints)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. train.iterations=100 (repeatable)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    t.add_argument("--stage", action="append", default=None, help="run only this stage (repeatable), e.g. stage1")
    t.add_argument("--nproc", type=int, default=1, help="processes for distributed training (launches torchrun)")
    t.set_defaults(func=run)


def run(a: argparse.Namespace) -> int:
    from uncol.config import load_config
    from uncol.engine import train_argv, train_entry

    cfg = load_config(a.config, a.set)
    argv = train_argv(a.config, a.out, a.set, resume=a.resume, stages=a.stage)
    summary = train_entry(cfg, Path(a.out), resume=a.resume, stages=a.stage, nproc=a.nproc, argv=argv)
    if summary is not None:
        print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))
    return 0
