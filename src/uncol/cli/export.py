"""``uncol export``: the prompt-free student as TorchScript or ONNX, runnable by ``uncol predict``."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("export", help="export the prompt-free student as TorchScript or ONNX")
    e.add_argument("--checkpoint", required=True, help="best.pt / final.pt written by uncol train")
    e.add_argument("--out", required=True, help="file to write, e.g. model.ts or model.onnx")
    e.add_argument("--format", default=None, choices=["torchscript", "onnx"],
                   help="default: onnx for a .onnx name, else torchscript")
    e.set_defaults(func=run)


def run(a: argparse.Namespace) -> int:
    from uncol.eval.export import export_checkpoint

    fmt = a.format or ("onnx" if Path(a.out).suffix.lower() == ".onnx" else "torchscript")
    out = export_checkpoint(a.checkpoint, a.out, fmt)
    print(f"wrote {out} ({fmt}); run it with `uncol predict --checkpoint {out} --input ... --output ...`")
    return 0
