"""``uncol weights list`` and ``uncol weights fetch NAME``: the official foundation-model checkpoints."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from uncol.cli.options import add_command_group


def add_parser(sub: argparse._SubParsersAction) -> None:
    wsub = add_command_group(sub, "weights", "official foundation-model checkpoints: list them, download one")
    wl = wsub.add_parser("list", help="the checkpoints uncol can download, and which are already here")
    wl.set_defaults(func=run_list)
    f = wsub.add_parser("fetch", help="download a checkpoint (checked) into the weights folder")
    f.add_argument("name", help="medsam_vit_b | sam_med3d_turbo")
    f.add_argument("--dir", default=None, help="folder to write to (default: $UNCOL_WEIGHTS or ~/.cache/uncol/weights)")
    f.add_argument("--url", default=None, help="download from here instead (a mirror, or file:///path of a local copy)")
    f.add_argument("--no-progress", action="store_true", help="no progress bar")
    f.set_defaults(func=run_fetch)


def run_list(a: argparse.Namespace) -> int:
    from uncol.teachers.weights import WEIGHTS, weights_dir

    d = weights_dir()
    print(f"weights folder: {d}  ($UNCOL_WEIGHTS moves it)")
    for name in WEIGHTS.names():
        info = WEIGHTS.get(name)
        state = "present" if (d / info.filename).is_file() else "not downloaded"
        print(f"  {name:<16} teacher {info.teacher:<13} {info.licence:<11} {state}  ({info.source})")
    return 0


def run_fetch(a: argparse.Namespace) -> int:
    from uncol.teachers.weights import WEIGHTS, fetch_weights, weights_dir

    info = WEIGHTS.get(a.name)
    dest = Path(a.dir or weights_dir()) / info.filename
    src = a.url or info.urls[0]
    print(f"downloading {info.name} ({info.licence}, {info.source})\n  from {src}\n  to   {dest}",
          file=sys.stderr)
    path = fetch_weights(a.name, a.dir, url=a.url, progress=not a.no_progress)
    check = f"md5 {info.md5}" if info.md5 else "loads safely with the official key layout"
    print(f"{path}  ({check}); teacher '{info.teacher}' finds it there when teacher.checkpoint is null")
    return 0
