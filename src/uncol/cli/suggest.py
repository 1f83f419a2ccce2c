"""``uncol suggest``: rank unlabelled cases for annotation (student uncertainty, teacher-student disagreement)."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("suggest", help="which unlabelled case to annotate next: a ranked CSV and thumbnails")
    s.add_argument("--checkpoint", required=True, help="best.pt / final.pt written by uncol train")
    s.add_argument("--data", required=True, help="dataset folder with dataset.json")
    s.add_argument("--split", default="unlabeled", help="cases to rank: unlabeled (default), train, val, test or all")
    s.add_argument("--split-file", default=None, help="split JSON (default: split.json beside the checkpoint)")
    s.add_argument("--teacher", default=None, help="foundation teacher for the disagreement score (default: the "
                   "checkpoint's teacher.name; none: rank by the student's uncertainty only)")
    s.add_argument("--top", type=int, default=12, help="thumbnails for this many top-ranked cases")
    s.add_argument("--out", default=None, help="folder for suggest.csv, suggest.md and thumbnails/ (default: "
                   "suggest/ beside the checkpoint, which uncol report shows)")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    s.set_defaults(func=run)


def run(a: argparse.Namespace) -> int:
    from uncol.eval.suggest import suggest

    rows = suggest(a.checkpoint, a.data, a.out, split=a.split, split_file=a.split_file, teacher=a.teacher,
                   device=a.device, top=a.top)
    for r in rows[: min(5, len(rows))]:
        print(f"{r['rank']:3d}  {r['case']}  entropy {r['entropy']:.3f}  1-Dice(G, student) {r['disagreement']:.3f}")
    out = Path(a.out) if a.out else Path(a.checkpoint).parent / "suggest"
    print(f"wrote {out / 'suggest.csv'} ({len(rows)} cases) and {out / 'suggest.md'}")
    return 0
