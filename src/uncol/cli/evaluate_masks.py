"""``uncol evaluate-masks``: score a folder of predicted masks against ground truth."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("evaluate-masks", help="score a folder of predicted masks against ground truth")
    m.add_argument("--pred", required=True, help="folder of predicted masks")
    m.add_argument("--gt", required=True, help="folder of ground-truth masks (matched by file name)")
    m.add_argument("--labels", default=None, help="dataset.json declaring the classes")
    m.add_argument("--convention", default="standard", choices=["standard", "medpy"],
                   help="standard: distances in mm; medpy: the literature's pooled-hd95 / directed-asd voxel numbers")
    m.add_argument("--png-spacing", type=float, default=None,
                   help="mm per pixel for PNG files (default: none, distances in px unless --spacing-csv)")
    m.add_argument("--spacing-csv", default=None, help="CSV of per-image pixel sizes in mm (first column the file "
                   "name, a 'pixel size' or 'spacing' column), e.g. HC18's training_set_pixel_size_and_HC.csv")
    m.add_argument("--gt-suffix", default="", help="ending of ground-truth names that is not part of the case "
                   "name, e.g. _mask to pair 000_HC.png with 000_HC_mask.png")
    m.add_argument("--pred-suffix", default="", help="ending of prediction names that is not part of the case name")
    m.add_argument("--out", required=True, help="metrics.json to write (a file, outside --pred and --gt)")
    m.set_defaults(func=run)


def run(a: argparse.Namespace) -> int:
    from uncol.eval.evaluate_masks import check_metrics_out, evaluate_masks, write_metrics
    from uncol.eval.metrics import format_table

    check_metrics_out(a.out, [("--pred", a.pred), ("--gt", a.gt), ("--labels", a.labels), ("--spacing-csv", a.spacing_csv)])
    labels = None
    if a.labels:
        from uncol.data.dataset import read_labels

        labels = read_labels(Path(a.labels))
    res = evaluate_masks(Path(a.pred), Path(a.gt), labels=labels, convention=a.convention, png_spacing=a.png_spacing,
                         gt_suffix=a.gt_suffix, pred_suffix=a.pred_suffix, spacing_csv=a.spacing_csv)
    write_metrics(res, Path(a.out))
    print(format_table({Path(a.pred).name: res}))
    return 0
