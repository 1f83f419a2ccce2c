"""``uncol report``: an HTML report (and PNG figures) of a run folder or a bench folder."""
from __future__ import annotations

import argparse

from uncol.cli.options import add_device


def add_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("report", help="an HTML report (and PNG figures) of a run folder or a bench folder")
    r.add_argument("folder", help="run folder (uncol train --out) or bench folder (uncol bench)")
    r.add_argument("--out", default=None, help="output folder (default: FOLDER/report)")
    r.add_argument("--data", default=None, help="dataset folder (default: the run's data.root)")
    r.add_argument("--split", default="test", help="split evaluated when the run has no metrics.json")
    r.add_argument("--no-overlays", action="store_true", help="no model inference: tables and curves only")
    add_device(r)
    r.set_defaults(func=run)


def run(a: argparse.Namespace) -> int:
    from uncol.eval.report import build_report

    path = build_report(a.folder, out=a.out, data=a.data, split=a.split, device=a.device, overlays=not a.no_overlays)
    print(f"wrote {path}")
    return 0
