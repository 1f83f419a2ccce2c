"""``uncol bench``: a grid of methods x labelled ratios x seeds from a bench YAML; resumable."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("bench", help="run a grid of methods x labelled ratios x seeds from a bench YAML; resumable")
    b.add_argument("bench", help="bench file (see benchmarks/*.yaml)")
    b.add_argument("--out", required=True, help="folder of the cells, the shared teacher cache and (default) the tables")
    b.add_argument("--tables", default=None, help="write results.{csv,json,md} and the plot here instead of OUT")
    b.add_argument("--only", action="append", default=None, metavar="METHOD",
                   help="run only this method (its id or label; repeatable); the tables still list every finished cell")
    b.add_argument("--cell", action="append", default=None, metavar="PATTERN",
                   help="run only the cells whose name matches this shell pattern, e.g. 'uncol/20pct/*' (repeatable); "
                        "lets several processes share one grid")
    b.add_argument("--dry-run", action="store_true", help="list the cells and whether each is done; run nothing")
    b.add_argument("--no-progress", action="store_true", help="no progress bars")
    b.set_defaults(func=run)


def run(a: argparse.Namespace) -> int:
    from uncol.bench.run import run_bench

    res = run_bench(a.bench, a.out, only=a.only, dry_run=a.dry_run, tables_dir=a.tables, progress=not a.no_progress,
                    cell_globs=a.cell)
    return 1 if res["failed"] else 0
