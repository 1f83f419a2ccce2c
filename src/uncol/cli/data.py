"""``uncol data import-folder`` and ``uncol data prepare``: dataset helpers."""
from __future__ import annotations

import argparse
from pathlib import Path

from uncol.cli.options import add_command_group


def add_parser(sub: argparse._SubParsersAction) -> None:
    dsub = add_command_group(sub, "data", "dataset helpers")
    imp = dsub.add_parser("import-folder", help="write dataset.json for an images folder and a labels folder")
    imp.add_argument("images", help="folder of images")
    imp.add_argument("labels", help="folder of label masks (matched to images by file stem)")
    imp.add_argument("out", help="dataset folder to write dataset.json to")
    imp.add_argument("--label-suffix", default="",
                     help="suffix of label stems, e.g. _mask for 000_HC.png / 000_HC_mask.png")
    imp.add_argument("--spacing-csv", default=None,
                     help="CSV of per-image pixel sizes in mm (first column the file name, a 'pixel size' or "
                     "'spacing' column), e.g. HC18's training_set_pixel_size_and_HC.csv; without it PNG "
                     "distances are in px")
    imp.set_defaults(func=run_import_folder)
    prep = dsub.add_parser("prepare", help="turn a downloaded dataset into what `uncol train` reads")
    prep.add_argument("name", help="oasis2d | pancreas-ct | imagetbad | msd")
    prep.add_argument("--raw", required=True, help="folder of the downloaded (raw) dataset")
    prep.add_argument("--out", required=True, help="dataset folder to write")
    prep.add_argument("--download", action="store_true", help="fetch public files (with checksums) into --raw")
    prep.add_argument("--seed", type=int, default=0, help="seed of any random choice the preparation makes")
    prep.set_defaults(func=run_prepare)


def run_import_folder(a: argparse.Namespace) -> int:
    from uncol.data.dataset import import_folder

    spec = import_folder(Path(a.images), Path(a.labels), Path(a.out), label_suffix=a.label_suffix,
                         spacing_csv=a.spacing_csv)
    print(f"wrote {Path(a.out) / 'dataset.json'}: {len(spec.cases)} cases, labels {spec.labels}")
    return 0


def run_prepare(a: argparse.Namespace) -> int:
    from uncol.data.prepare import prepare

    out = prepare(a.name, Path(a.raw), Path(a.out), download=a.download, seed=a.seed)
    print(f"prepared {a.name} in {out}")
    return 0
