"""``uncol demo``: supervised vs UnCoL on the embedded demo data."""
from __future__ import annotations

import argparse
from pathlib import Path

from uncol.cli.options import add_device


def add_parser(sub: argparse._SubParsersAction) -> None:
    dm = sub.add_parser("demo", help="train on the embedded demo data and print a metrics table")
    dm.add_argument("--out", default="runs/demo", help="folder of the two runs and results.md")
    dm.add_argument("--quick", action="store_true", help="a very short schedule (smoke test)")
    add_device(dm)
    dm.set_defaults(func=run)


def run(a: argparse.Namespace) -> int:
    from uncol.demo import run_demo

    run_demo(Path(a.out), quick=a.quick, device=a.device)
    return 0
