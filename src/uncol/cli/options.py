"""Options several commands share, declared once."""
from __future__ import annotations

import argparse


def add_checkpoint_on_split(p: argparse.ArgumentParser) -> None:
    """``--checkpoint --data --split --split-file``: a trained checkpoint scored on a split of a dataset."""
    p.add_argument("--checkpoint", required=True, help="best.pt / final.pt written by uncol train")
    p.add_argument("--data", required=True, help="dataset folder with dataset.json")
    p.add_argument("--split", default="test", help="train/val/test/labeled/unlabeled/all")
    p.add_argument("--split-file", default=None, help="split JSON (default: split.json beside the checkpoint)")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")


def add_command_group(sub: argparse._SubParsersAction, name: str, help_text: str) -> argparse._SubParsersAction:
    """A command with subcommands (``uncol data ...``, ``uncol weights ...``): their subparsers."""
    group = sub.add_parser(name, help=help_text)
    return group.add_subparsers(dest=f"{name}_command", required=True, metavar=f"{name.upper()}_COMMAND",
                                help="one of:")
