"""``uncol weights list`` and ``uncol weights fetch NAME`` (registered at import by ``uncol.cli_extra``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from uncol.cli import _EXTRA_PARSERS, COMMANDS


def _weights_parser(sub: argparse._SubParsersAction) -> None:
    w = sub.add_parser("weights", help="official foundation-model checkpoints: list them, download one")
    wsub = w.add_subparsers(dest="weights_command", required=True)
    wsub.add_parser("list", help="the checkpoints uncol can download, and which are already here")
    f = wsub.add_parser("fetch", help="download a checkpoint (checked) into the weights folder")
    f.add_argument("name", help="medsam_vit_b | sam_med3d_turbo")
    f.add_argument("--dir", default=None, help="folder to write to (default: $UNCOL_WEIGHTS or ~/.cache/uncol/weights)")
    f.add_argument("--url", default=None, help="download from here instead (a mirror, or file:///path of a local copy)")
    f.add_argument("--no-progress", action="store_true")


@COMMANDS.register("weights list")
def cmd_weights_list(a: argparse.Namespace) -> int:
    from uncol.teachers.weights import WEIGHTS, weights_dir

    d = weights_dir()
    print(f"weights folder: {d}  ($UNCOL_WEIGHTS moves it)")
    for name in WEIGHTS.names():
        info = WEIGHTS.get(name)
        here = (d / info.filename).is_file()
        state = "present" if here else "not downloaded"
        print(f"  {name:<16} teacher {info.teacher:<13} {info.licence:<11} {state}  "
              f"({info.source})")
    return 0


@COMMANDS.register("weights fetch")
def cmd_weights_fetch(a: argparse.Namespace) -> int:
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


_EXTRA_PARSERS.append(_weights_parser)
