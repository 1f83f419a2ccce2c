"""``uncol zero-shot``: a foundation model alone, prompted from the ground truth, scored."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    z = sub.add_parser("zero-shot", help="prompt a foundation model with ground-truth boxes/points and score it")
    z.add_argument("--teacher", required=True, help="litemedsam | medsam_vit_b | sam_med3d | slicewise")
    z.add_argument("--checkpoint", default=None,
                   help="teacher weights (default: the official file in the weights folder, see `uncol weights`)")
    z.add_argument("--data", required=True, help="dataset folder with dataset.json")
    z.add_argument("--split", default=None, help="a split name from --split-file; default: all listed cases")
    z.add_argument("--split-file", default=None, help="split JSON written by uncol train")
    z.add_argument("--jitter", type=float, default=0.0, help="box jitter in px of the 1024-px frame (MedSAM: 20)")
    z.add_argument("--seed", type=int, default=0, help="seed of the prompt jitter")
    z.add_argument("--out", required=True, help="folder for metrics.json")
    z.add_argument("--limit", type=int, default=0, help="at most this many cases (0 = all)")
    z.set_defaults(func=run)


def run(a: argparse.Namespace) -> int:
    from uncol.eval.metrics import format_table
    from uncol.eval.prompted import zero_shot_dataset

    res = zero_shot_dataset(a.teacher, a.data, a.out, checkpoint=a.checkpoint, split=a.split, split_file=a.split_file,
                            jitter_px=a.jitter, seed=a.seed, limit=a.limit)
    print(format_table({f"{a.teacher} zero-shot": res}))
    return 0
