"""``uncol predict``: segment image files with the prompt-free student of a checkpoint."""
from __future__ import annotations

import argparse
from pathlib import Path

from uncol.cli.options import add_device


def add_parser(sub: argparse._SubParsersAction) -> None:
    pr = sub.add_parser("predict", help="segment image files (prompt-free student)")
    pr.add_argument("--checkpoint", required=True, help="best.pt / final.pt written by uncol train")
    pr.add_argument("--input", required=True, help="an image file or a folder")
    pr.add_argument("--output", required=True, help="output folder")
    pr.add_argument("--uncertainty", action="store_true", help="also write the entropy map next to each mask")
    pr.add_argument("--probabilities", action="store_true", help="also write per-class probability maps")
    add_device(pr)
    pr.set_defaults(func=run)


def run(a: argparse.Namespace) -> int:
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
