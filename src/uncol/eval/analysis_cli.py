"""``uncol uncertainty`` and ``uncol report``: thin commands over :mod:`uncol.eval.uncertainty` and
:mod:`uncol.eval.report` (imported by ``uncol.cli_extra``; ``uncol profile`` lives there)."""
from __future__ import annotations

import argparse

from uncol.cli import _EXTRA_PARSERS, COMMANDS


def _uncertainty_parser(sub: argparse._SubParsersAction) -> None:
    u = sub.add_parser("uncertainty", help="uncertainty quality and calibration of a checkpoint on a split")
    u.add_argument("--checkpoint", required=True)
    u.add_argument("--data", required=True, help="dataset folder with dataset.json")
    u.add_argument("--split", default="test", help="train/val/test/labeled/unlabeled/all")
    u.add_argument("--split-file", default=None, help="split JSON (default: split.json beside the checkpoint)")
    u.add_argument("--out", required=True, help="folder for uncertainty.json, reliability.png, risk_coverage.png")
    u.add_argument("--mc-passes", type=int, default=10, help="MC-dropout passes (< 2: no MC-dropout scores)")
    u.add_argument("--max-voxels", type=int, default=2_000_000, help="voxels analysed at most (seeded subsample)")
    u.add_argument("--bins", type=int, default=15, help="reliability-diagram bins")
    u.add_argument("--seed", type=int, default=0)
    u.add_argument("--device", default="auto")


def _report_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("report", help="an HTML report (and PNG figures) of a run folder or a bench folder")
    r.add_argument("folder", help="run folder (uncol train --out) or bench folder (uncol bench)")
    r.add_argument("--out", default=None, help="output folder (default: FOLDER/report)")
    r.add_argument("--data", default=None, help="dataset folder (default: the run's data.root)")
    r.add_argument("--split", default="test", help="split evaluated when the run has no metrics.json")
    r.add_argument("--no-overlays", action="store_true", help="no model inference: tables and curves only")
    r.add_argument("--device", default="auto")


@COMMANDS.register("uncertainty")
def cmd_uncertainty(a: argparse.Namespace) -> int:
    from pathlib import Path

    from uncol.errors import ConfigError
    from uncol.eval.uncertainty import summary_rows, uncertainty_checkpoint

    if a.max_voxels < 1 or a.bins < 1:
        raise ConfigError("--max-voxels and --bins must be positive integers")
    res = uncertainty_checkpoint(a.checkpoint, a.data, a.out, split=a.split, split_file=a.split_file,
                                 device=a.device, mc_passes=a.mc_passes, max_voxels=a.max_voxels, seed=a.seed,
                                 n_bins=a.bins)
    for name, value in summary_rows(res):
        print(f"{name:<36} {value}")
    if res.get("mc_note"):
        print(f"note: {res['mc_note']}")
    print(f"wrote {Path(a.out) / 'uncertainty.json'}")
    return 0


@COMMANDS.register("report")
def cmd_report(a: argparse.Namespace) -> int:
    from uncol.eval.report import build_report

    path = build_report(a.folder, out=a.out, data=a.data, split=a.split, device=a.device, overlays=not a.no_overlays)
    print(f"wrote {path}")
    return 0


_EXTRA_PARSERS.extend([_uncertainty_parser, _report_parser])
