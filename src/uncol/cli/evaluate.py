"""``uncol evaluate``: score a checkpoint on a held-out split."""
from __future__ import annotations

import argparse
from pathlib import Path

from uncol.cli.options import add_checkpoint_on_split, add_device


def add_parser(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("evaluate", help="score a checkpoint on a held-out split")
    add_checkpoint_on_split(e)
    e.add_argument("--out", required=True, help="folder for metrics.json (and predictions/)")
    add_device(e)
    e.add_argument("--save-predictions", action="store_true", help="also write each predicted mask to OUT/predictions")
    e.set_defaults(func=run)


def run(a: argparse.Namespace) -> int:
    from uncol.eval.evaluate import evaluate_checkpoint
    from uncol.eval.metrics import format_table

    res = evaluate_checkpoint(a.checkpoint, a.data, a.out, split=a.split, device=a.device,
                              split_file=a.split_file, save_predictions=a.save_predictions)
    print(format_table({Path(a.checkpoint).parent.name or "model": res}))
    print(f"wrote {Path(a.out) / 'metrics.json'}")
    return 0
