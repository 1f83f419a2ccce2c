"""The ``uncol`` command line: ``main`` and the explicit list of command modules.

Each command module defines ``add_parser(subparsers) -> None``, which adds its sub-parser(s) and sets
``func`` (a ``(argparse.Namespace) -> int`` function) with ``set_defaults``. Commands are thin: they call
the library. Every user error (bad data, config, checkpoint, path) ends with one line ``error: ...``
naming the file or key and the fix, and exit status 2, without a traceback.
"""
from __future__ import annotations

import argparse
import sys

from uncol.cli import (
    bench,
    cache,
    data,
    demo,
    evaluate,
    evaluate_masks,
    export,
    predict,
    profile,
    report,
    suggest,
    train,
    uncertainty,
    weights,
    zero_shot,
)
from uncol.errors import UncolError, record_exit_status
from uncol.registry import UnknownNameError

#: The commands of ``uncol``, in the order ``uncol --help`` lists them.
COMMAND_MODULES = (train, evaluate, predict, evaluate_masks, data, demo, zero_shot, profile, bench,
                   uncertainty, report, weights, export, cache, suggest)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="uncol", description="Semi-supervised medical image segmentation with foundation-model teachers (UnCoL).")
    from uncol import __version__

    p.add_argument("--version", action="version", version=f"uncol {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", help="one of:")
    for module in COMMAND_MODULES:
        module.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command; returns the exit status."""
    a = build_parser().parse_args(argv)
    try:
        return a.func(a)
    except (UncolError, UnknownNameError) as e:
        msg = " ".join(str(e).split())
        print(f"error: {msg}", file=sys.stderr)
        status = getattr(e, "exit_status", 2)  # 2: bad input; 1: a run that failed (uncol.errors.TrainingError)
        record_exit_status(status)
        return status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
