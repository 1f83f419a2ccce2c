"""``uncol uncertainty``: uncertainty quality and calibration of a checkpoint on a split."""
from __future__ import annotations

import argparse
from pathlib import Path

from uncol.cli.options import add_checkpoint_on_split, add_device


def add_parser(sub: argparse._SubParsersAction) -> None:
    u = sub.add_parser("uncertainty", help="uncertainty quality and calibration of a checkpoint on a split")
    add_checkpoint_on_split(u)
    u.add_argument("--out", required=True, help="folder for uncertainty.json, reliability.png, risk_coverage.png")
    u.add_argument("--mc-passes", type=int, default=10, help="MC-dropout passes (< 2: no MC-dropout scores)")
    u.add_argument("--max-voxels", type=int, default=2_000_000, help="voxels analysed at most (seeded subsample)")
    u.add_argument("--bins", type=int, default=15, help="reliability-diagram bins")
    u.add_argument("--seed", type=int, default=0, help="seed of the voxel subsample and MC-dropout")
    add_device(u)
    u.set_defaults(func=run)


def run(a: argparse.Namespace) -> int:
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
