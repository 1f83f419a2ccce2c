"""The ``uncol`` command line: thin commands that call the library.

Every user error (bad data, config, checkpoint, path) ends with one line ``error: ...`` naming the
file or key and the fix, and exit status 2, without a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from uncol.errors import UncolError
from uncol.registry import Registry, UnknownNameError

COMMANDS: Registry[Callable[[argparse.Namespace], int]] = Registry("command")


def _print_metrics(res: dict[str, Any], title: str) -> None:
    from uncol.eval.metrics import format_table

    print(format_table({title: res}))


# ---------------------------------------------------------------------------------------------- train
@COMMANDS.register("train")
def cmd_train(a: argparse.Namespace) -> int:
    from uncol.config import load_config
    from uncol.engine import train_argv, train_entry

    cfg = load_config(a.config, a.set)
    argv = train_argv(a.config, a.out, a.set, resume=a.resume, stages=a.stage)
    summary = train_entry(cfg, Path(a.out), resume=a.resume, stages=a.stage, nproc=a.nproc, argv=argv)
    if summary is not None:
        print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))
    return 0


@COMMANDS.register("evaluate")
def cmd_evaluate(a: argparse.Namespace) -> int:
    from uncol.eval.evaluate import evaluate_checkpoint

    res = evaluate_checkpoint(a.checkpoint, a.data, a.out, split=a.split, device=a.device,
                              split_file=a.split_file, save_predictions=a.save_predictions)
    _print_metrics(res, Path(a.checkpoint).parent.name or "model")
    print(f"wrote {Path(a.out) / 'metrics.json'}")
    return 0


@COMMANDS.register("predict")
def cmd_predict(a: argparse.Namespace) -> int:
    from uncol.errors import DataError
    from uncol.eval.evaluate import predict_paths

    src = Path(a.input)
    if src.is_dir():
        inputs = sorted(p for p in src.iterdir() if p.name.endswith((".nii", ".nii.gz", ".png", ".h5")))
    elif src.is_file():
        inputs = [src]
    else:
        raise DataError(f"input {str(src)!r} not found; pass an image file or a folder of images")
    if not inputs:
        raise DataError(f"input folder {str(src)!r} holds no .nii/.nii.gz/.png/.h5 images")
    written = predict_paths(a.checkpoint, inputs, a.output, device=a.device, uncertainty=a.uncertainty,
                            probabilities=a.probabilities)
    print(f"wrote {len(written)} files to {a.output}")
    return 0


@COMMANDS.register("evaluate-masks")
def cmd_evaluate_masks(a: argparse.Namespace) -> int:
    from uncol.eval.evaluate_masks import evaluate_masks, write_metrics

    labels = None
    if a.labels:
        from uncol.data.dataset import read_labels

        labels = read_labels(Path(a.labels))
    res = evaluate_masks(Path(a.pred), Path(a.gt), labels=labels, convention=a.convention, png_spacing=a.png_spacing)
    write_metrics(res, Path(a.out))
    _print_metrics(res, Path(a.pred).name)
    return 0


# ----------------------------------------------------------------------------------------------- data
@COMMANDS.register("data import-folder")
def cmd_import_folder(a: argparse.Namespace) -> int:
    from uncol.data.dataset import import_folder

    spec = import_folder(Path(a.images), Path(a.labels), Path(a.out), label_suffix=a.label_suffix)
    print(f"wrote {Path(a.out) / 'dataset.json'}: {len(spec.cases)} cases, labels {spec.labels}")
    return 0


@COMMANDS.register("data prepare")
def cmd_prepare(a: argparse.Namespace) -> int:
    from uncol.data.prepare import prepare

    out = prepare(a.name, Path(a.raw), Path(a.out), download=a.download, seed=a.seed)
    print(f"prepared {a.name} in {out}")
    return 0


# ----------------------------------------------------------------------------------------------- demo
@COMMANDS.register("demo")
def cmd_demo(a: argparse.Namespace) -> int:
    from uncol.demo import run_demo

    run_demo(Path(a.out), quick=a.quick, device=a.device)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="uncol", description="Semi-supervised medical image segmentation with foundation-model teachers (UnCoL).")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a method from a YAML config")
    t.add_argument("config", help="YAML config (see configs/)")
    t.add_argument("--out", required=True, help="run folder (config, split, logs, checkpoints)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. train.iterations=100")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    t.add_argument("--stage", action="append", default=None, help="run only this stage (repeatable), e.g. stage1")
    t.add_argument("--nproc", type=int, default=1, help="processes for distributed training (launches torchrun)")

    e = sub.add_parser("evaluate", help="score a checkpoint on a held-out split")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--data", required=True, help="dataset folder with dataset.json")
    e.add_argument("--split", default="test", help="train/val/test/labeled/unlabeled/all")
    e.add_argument("--split-file", default=None, help="split JSON (default: split.json beside the checkpoint)")
    e.add_argument("--out", required=True)
    e.add_argument("--device", default="auto")
    e.add_argument("--save-predictions", action="store_true")

    pr = sub.add_parser("predict", help="segment image files (prompt-free student)")
    pr.add_argument("--checkpoint", required=True)
    pr.add_argument("--input", required=True, help="an image file or a folder")
    pr.add_argument("--output", required=True, help="output folder")
    pr.add_argument("--uncertainty", action="store_true", help="also write the entropy map next to each mask")
    pr.add_argument("--probabilities", action="store_true", help="also write per-class probability maps")
    pr.add_argument("--device", default="auto")

    m = sub.add_parser("evaluate-masks", help="score a folder of predicted masks against ground truth")
    m.add_argument("--pred", required=True)
    m.add_argument("--gt", required=True)
    m.add_argument("--labels", default=None, help="dataset.json declaring the classes")
    m.add_argument("--convention", default="standard", choices=["standard", "medpy"])
    m.add_argument("--png-spacing", type=float, default=1.0, help="mm per pixel for PNG files")
    m.add_argument("--out", required=True, help="metrics.json to write")

    d = sub.add_parser("data", help="dataset helpers")
    dsub = d.add_subparsers(dest="data_command", required=True)
    imp = dsub.add_parser("import-folder", help="write dataset.json for an images folder and a labels folder")
    imp.add_argument("images")
    imp.add_argument("labels")
    imp.add_argument("out")
    imp.add_argument("--label-suffix", default="", help="suffix of label stems, e.g. _mask for 000_HC.png / 000_HC_mask.png")
    prep = dsub.add_parser("prepare", help="turn a downloaded dataset into what `uncol train` reads")
    prep.add_argument("name", help="oasis2d | pancreas-ct | imagetbad | msd")
    prep.add_argument("--raw", required=True)
    prep.add_argument("--out", required=True)
    prep.add_argument("--download", action="store_true", help="fetch public files (with checksums) into --raw")
    prep.add_argument("--seed", type=int, default=0)

    dm = sub.add_parser("demo", help="train on the embedded demo data and print a metrics table")
    dm.add_argument("--out", default="runs/demo")
    dm.add_argument("--quick", action="store_true", help="a very short schedule (smoke test)")
    dm.add_argument("--device", default="auto")

    for extra in _EXTRA_PARSERS:
        extra(sub)
    return p


# Later modules add subcommands here (bench, profile, zero-shot, uncertainty, report): (subparsers) -> None
_EXTRA_PARSERS: list[Callable[[Any], None]] = []


def main(argv: list[str] | None = None) -> int:
    from uncol import cli_extra  # noqa: F401  (registers the optional subcommands)

    parser = build_parser()
    a = parser.parse_args(argv)
    nested = getattr(a, f"{a.command.replace('-', '_')}_command", None)  # `uncol data prepare`, `uncol weights fetch`
    name = f"{a.command} {nested}" if nested else a.command
    try:
        return COMMANDS.get(name)(a)
    except (UncolError, UnknownNameError) as e:
        msg = " ".join(str(e).split())
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
