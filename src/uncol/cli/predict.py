"""``uncol predict``: segment image files with the prompt-free student of a checkpoint."""
from __future__ import annotations

import argparse

from uncol.cli.options import add_device


def add_parser(sub: argparse._SubParsersAction) -> None:
    pr = sub.add_parser("predict", help="segment image files (prompt-free student)")
    pr.add_argument("--checkpoint", required=True, help="best.pt / final.pt written by uncol train, or a "
                    ".ts (TorchScript) / .onnx file written by uncol export")
    pr.add_argument("--input", required=True, help="an image file (NIfTI, PNG, H5, NRRD, MHA, DICOM), a DICOM "
                    "series folder, or a folder of images")
    pr.add_argument("--output", required=True, help="output folder (outside the input): masks, label tables, "
                    "uncertainty/ and probabilities/")
    pr.add_argument("--uncertainty", action="store_true", help="also write each entropy map to OUTPUT/uncertainty/")
    pr.add_argument("--probabilities", action="store_true",
                    help="also write per-class probability maps to OUTPUT/probabilities/")
    pr.add_argument("--png-values", default="visible", choices=["visible", "raw"],
                    help="PNG masks: visible (index * 255 // (K-1), the default) or raw class indices")
    add_device(pr)
    pr.set_defaults(func=run)


def run(a: argparse.Namespace) -> int:
    from uncol.eval.predict import collect_inputs, predict_paths

    written = predict_paths(a.checkpoint, collect_inputs(a.input), a.output, device=a.device,
                            uncertainty=a.uncertainty, probabilities=a.probabilities, png_values=a.png_values,
                            input_arg=a.input)
    print(f"wrote {len(written)} files to {a.output}")
    return 0
