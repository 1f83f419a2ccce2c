"""``uncol profile``: parameters and MACs of a config's student."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="parameters and MACs of a config's student")
    p.add_argument("config", help="YAML config (see configs/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)")
    p.add_argument("--out", default=None, help="profile.json to write (default: print only)")
    p.add_argument("--size", type=int, nargs="+", default=None, help="input size (default: data.size)")
    p.set_defaults(func=run)


def run(a: argparse.Namespace) -> int:
    from uncol.config import load_config
    from uncol.eval.profile import profile_student
    from uncol.runtime import atomic_write_json

    cfg = load_config(a.config, a.set)
    res = profile_student(cfg, size=tuple(a.size) if a.size else None)
    print(json.dumps(res, indent=2))
    if a.out:
        atomic_write_json(Path(a.out), res)
    return 0
