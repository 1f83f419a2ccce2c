"""Optional subcommands registered beside the core ones (zero-shot, profile, ...)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from uncol.cli import _EXTRA_PARSERS, COMMANDS


def _zero_shot_parser(sub: argparse._SubParsersAction) -> None:
    z = sub.add_parser("zero-shot", help="prompt a foundation model with ground-truth boxes/points and score it")
    z.add_argument("--teacher", required=True, help="litemedsam | medsam_vit_b | sam_med3d | slicewise")
    z.add_argument("--checkpoint", default=None)
    z.add_argument("--data", required=True)
    z.add_argument("--split", default=None, help="a split name from --split-file; default: all listed cases")
    z.add_argument("--split-file", default=None)
    z.add_argument("--jitter", type=float, default=0.0, help="box jitter in px of the 1024-px frame (MedSAM: 20)")
    z.add_argument("--seed", type=int, default=0)
    z.add_argument("--out", required=True)
    z.add_argument("--limit", type=int, default=0, help="at most this many cases (0 = all)")


def _profile_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="parameters and MACs of a config's student")
    p.add_argument("config")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--out", default=None, help="profile.json")
    p.add_argument("--size", type=int, nargs="+", default=None, help="input size (default: data.size)")


@COMMANDS.register("profile")
def cmd_profile(a: argparse.Namespace) -> int:
    from uncol.config import load_config
    from uncol.engine.io import atomic_write_json
    from uncol.eval.efficiency import profile_student

    cfg = load_config(a.config, a.set)
    res = profile_student(cfg, size=tuple(a.size) if a.size else None)
    print(json.dumps(res, indent=2))
    if a.out:
        atomic_write_json(Path(a.out), res)
    return 0


@COMMANDS.register("zero-shot")
def cmd_zero_shot(a: argparse.Namespace) -> int:
    from uncol.teachers.zero_shot import zero_shot_command

    res = zero_shot_command(a)
    from uncol.eval.metrics import format_table

    print(format_table({f"{a.teacher} zero-shot": res}))
    return 0


_EXTRA_PARSERS.extend([_zero_shot_parser, _profile_parser])


# Subcommands defined beside their library code: importing them appends their parsers to
# ``_EXTRA_PARSERS`` and registers their commands in ``COMMANDS``.
from uncol.bench import cli as _bench_cli  # noqa: F401  (bench)
from uncol.eval import analysis_cli as _analysis_cli  # noqa: F401  (uncertainty, report)
from uncol.teachers import weights_cli as _weights_cli  # noqa: F401  (weights list / fetch)
