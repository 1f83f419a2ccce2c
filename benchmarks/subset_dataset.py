"""Write a dataset.json holding the first N cases of another (whole groups kept together), for CPU-sized benches.

    python benchmarks/subset_dataset.py data/hc18 data/hc18_120 --n 120 --group '^(\\d+)_'

Cases are taken in the source's sorted case-id order; image/label paths are made absolute, so the new
folder holds only dataset.json. The class names can be renamed: --label 1=head.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--n", type=int, required=True, help="number of cases (rounded up to whole groups)")
    ap.add_argument("--group", default=None, help="regex whose first group names a case's group (subject)")
    ap.add_argument("--label", action="append", default=[], metavar="I=NAME", help="rename class I")
    a = ap.parse_args()
    src = Path(a.src)
    d = json.loads((src / "dataset.json").read_text())
    entries = sorted(d["training"], key=lambda e: Path(e["image"]).name)
    keep: list[dict] = []
    last = None
    for e in entries:
        key = Path(e["image"]).name
        g = re.match(a.group, key).group(1) if a.group and re.match(a.group, key) else key
        if len(keep) >= a.n and g != last:
            break
        keep.append({k: str((src / v).resolve()) for k, v in e.items()})
        last = g
    for item in a.label:
        i, name = item.split("=", 1)
        d["labels"][i] = name
    d.update(training=keep, numTraining=len(keep), name=f"{d.get('name', src.name)}-first{len(keep)}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "dataset.json").write_text(json.dumps(d, indent=2))
    print(f"wrote {out / 'dataset.json'}: {len(keep)} of {len(entries)} cases")


if __name__ == "__main__":
    main()
