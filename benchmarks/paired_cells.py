"""Per-seed test Dice of a bench's finished cells and paired per-image differences between two rows.

    python benchmarks/paired_cells.py runs/bench/knowledge_path --ratio 10pct --rows dpkd_none dpkd_visual \\
        dpkd_semantic dpkd_both supervised --pairs dpkd_both:dpkd_none dpkd_semantic:dpkd_none dpkd_both:supervised

Reads ``OUT/cells/<row>/<ratio>/s<seed>/metrics.json`` (as ``uncol bench`` writes them). Prints a markdown
table (Dice % per seed, mean ± sd over seeds, wall seconds per cell) and, for each ``a:b`` pair, the mean of
the per-image Dice differences ``a - b`` pooled over the seeds both rows have, with a bootstrap 95 % interval
("no difference" when it crosses zero) and the per-seed mean differences.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from suggest_vs_random import bootstrap_ci  # one bootstrap for both benchmark readings (same folder)


def load(out: Path, row: str, ratio: str) -> dict[int, dict]:
    cells = {}
    for d in sorted((out / "cells" / row / ratio).glob("s*")):
        m, s = d / "metrics.json", d / "summary.json"
        if m.is_file():
            met = json.loads(m.read_text())
            wall = json.loads(s.read_text()).get("wall_time_s") if s.is_file() else None
            cells[int(d.name[1:])] = {"dice": met["mean"]["dice"], "wall": wall,
                                      "per_case": {c["case"]: c["mean"]["dice"] for c in met["per_case"]}}
    return cells


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--ratio", default="10pct")
    p.add_argument("--rows", nargs="+", required=True)
    p.add_argument("--pairs", nargs="*", default=[])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a = p.parse_args()
    data = {r: load(a.out, r, "100pct" if r.endswith("_full") else a.ratio) for r in a.rows}
    print("| row | " + " | ".join(f"seed {s}" for s in a.seeds) + " | mean ± sd | wall s per cell |")
    print("|---|" + "---|" * (len(a.seeds) + 2))
    for r in a.rows:
        v = [100 * data[r][s]["dice"] for s in a.seeds if s in data[r]]
        cells = [f"{100 * data[r][s]['dice']:.2f}" if s in data[r] else "–" for s in a.seeds]
        sd = f"{np.std(v, ddof=1):.2f}" if len(v) > 1 else "–"
        walls = ", ".join(f"{data[r][s]['wall']:.0f}" for s in a.seeds if s in data[r] and data[r][s]["wall"])
        print(f"| {r} | " + " | ".join(cells) + f" | {np.mean(v):.2f} ± {sd} (n={len(v)}) | {walls} |")
    print()
    for pair in a.pairs:
        x_, y_ = pair.split(":")
        diffs, per_seed = [], []
        for s in a.seeds:
            if s in data[x_] and s in data[y_]:
                px, py = data[x_][s]["per_case"], data[y_][s]["per_case"]
                d = np.array([100 * (px[c] - py[c]) for c in sorted(px) if c in py])
                diffs.append(d)
                per_seed.append(f"{d.mean():+.2f}")
        if not diffs:
            continue
        x = np.concatenate(diffs)
        lo, hi = bootstrap_ci(x)
        verdict = "no difference" if lo <= 0 <= hi else (f"{x_} ahead" if lo > 0 else f"{x_} behind")
        print(f"- {x_} − {y_}: {x.mean():+.2f} points, 95 % bootstrap CI [{lo:+.2f}, {hi:+.2f}] over {len(x)} "
              f"(seed, image) pairs; per seed {', '.join(per_seed)}; wins {int((x > 0).sum())}, "
              f"losses {int((x < 0).sum())} → {verdict}")


if __name__ == "__main__":
    main()
