"""The bench's tables: results.csv / results.json / results.md in the paper's layout, and a Dice plot.

Rows = methods × labelled ratio; columns = classes × (DSC %, Jaccard %, 95HD, ASD) and their mean
over classes. Each entry is ``mean ± std`` over the seeds (trials) of the per-seed value, which is
itself the mean over the test cases (as in the paper's tables). With one seed there is no ± part.
Distances are in the units of ``metrics.json`` (mm from the spacing; pixels for PNGs without a
spacing, whose spacing is 1).

results.md has one block per labelled ratio of the bench; reference rows (ratio-independent rows
such as zero-shot, and rows at a ratio outside the bench's list such as "100 %") are repeated at the
top of every block, like the paper's "fully supervised" and "MedSAM" rows.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uncol.bench.grid import BenchSpec, Cell, ratio_label
from uncol.runtime import atomic_write, atomic_write_json, atomic_write_text

METRICS = ("dice", "jaccard", "hd95", "asd")
HEAD = {"dice": "DSC %", "jaccard": "Jaccard %", "hd95": "95HD", "asd": "ASD"}
PERCENT = {"dice", "jaccard"}
MEAN = "mean"  # pseudo-class: the mean over foreground classes


@dataclass
class Row:
    """One table row: a method at one ratio, aggregated over its finished seeds."""

    label: str
    id: str
    ratio: int | float | None
    seeds: list[int] = field(default_factory=list)
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # class -> metric -> per-seed values
    seconds: list[float] = field(default_factory=list)
    missed: list[int] = field(default_factory=list)
    prompted: bool = False  # scored with ground-truth prompts (zero-shot / fine-tuned foundation model)

    def stat(self, cls: str, metric: str) -> tuple[float, float]:
        v = np.asarray(self.values.get(cls, {}).get(metric, []), dtype=np.float64)
        return (float(v.mean()), float(v.std())) if v.size else (float("nan"), float("nan"))


def collect(cells: list[Cell], out: Path) -> tuple[list[Row], list[str], list[dict[str, Any]]]:
    """Rows (grid order) of the finished cells, the class names, and one flat record per finished cell."""
    rows: dict[tuple[str, Any], Row] = {}
    classes: list[str] = []
    records = []
    for c in cells:
        p = Path(out) / "cells" / c.key / "metrics.json"
        if not p.is_file():
            continue
        res = json.loads(p.read_text())
        row = rows.setdefault((c.method.id, c.ratio), Row(c.method.label, c.method.id, c.ratio, prompted=_prompted(c)))
        row.seeds.append(c.seed)
        for name, pc in res.get("per_class", {}).items():
            if name not in classes:
                classes.append(name)
            for m in METRICS:
                row.values.setdefault(name, {}).setdefault(m, []).append(float(pc[m]))
        for m in METRICS:
            row.values.setdefault(MEAN, {}).setdefault(m, []).append(float(res["mean"][m]))
        timing = res.get("bench", {}).get("timing", {})
        row.seconds.append(float(timing.get("total_s", float("nan"))))
        row.missed.append(int(res.get("missed", 0)))
        records.append({"method": c.method.label, "id": c.method.id, "kind": c.method.kind, "ratio": c.ratio,
                        "seed": c.seed, "cell": c.key, "num_cases": res.get("num_cases"),
                        "units": res.get("units", "mm"), "mean": res["mean"], "std_over_cases": res.get("std"),
                        "per_class": {k: {m: v[m] for m in METRICS} for k, v in res.get("per_class", {}).items()},
                        "missed": res.get("missed", 0), "timing": timing})
    return list(rows.values()), classes, records


def _prompted(cell: Cell) -> bool:
    from uncol.methods import METHODS

    if cell.method.kind == "zero_shot":
        return True
    name = cell.config.get("method", {}).get("name", "supervised")
    return name in METHODS and bool(getattr(METHODS.get(name), "prompted_eval", False))


def _fmt(mean: float, std: float, pct: bool, n: int) -> str:
    if not np.isfinite(mean):
        return "–"
    k = 100.0 if pct else 1.0
    return f"{k * mean:.2f}" + (f" ± {k * std:.2f}" if n > 1 else "")


def _columns(classes: list[str]) -> list[str]:
    return ([*classes, MEAN] if len(classes) > 1 else [MEAN])


def blocks(bench: BenchSpec, rows: list[Row]) -> list[tuple[Any, list[Row]]]:
    """``[(ratio, rows)]`` per bench ratio: the reference rows first, then the rows at that ratio."""
    ratios = list(bench.ratios)
    ref = [r for r in rows if r.ratio is None or r.ratio not in ratios]
    return [(q, ref + [r for r in rows if r.ratio == q]) for q in ratios] or [(None, rows)]


def markdown(bench: BenchSpec, rows: list[Row], classes: list[str], env: dict[str, Any] | None,
             units: str = "mm") -> str:
    cols = _columns(classes)
    head = ["Method", "Labelled", "n"]
    for c in cols:
        prefix = "" if c == MEAN and len(cols) == 1 else (f"{c} " if c != MEAN else "mean ")
        head += [f"{prefix}{HEAD[m]}" for m in METRICS]
    head += ["s / cell"]
    out = [f"# {bench.title or bench.name}", ""]
    if bench.description:
        out += [bench.description.strip(), ""]
    out += [(f"Mean ± std over seeds (n) of the test-split mean; distances in {units}. "
             "Bold: best mean DSC of the block."), ""]
    for ratio, rs in blocks(bench, rows):
        if ratio is not None:
            out += [f"## {ratio_label(ratio)} labelled", ""]
        best = max((r.stat(MEAN, "dice")[0] for r in rs if np.isfinite(r.stat(MEAN, "dice")[0])), default=None)
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in rs:
            line = [r.label, ratio_label(r.ratio), str(len(r.seeds))]
            for c in cols:
                for m in METRICS:
                    mean, std = r.stat(c, m)
                    s = _fmt(mean, std, m in PERCENT, len(r.seeds))
                    if c == MEAN and m == "dice" and best is not None and mean == best:
                        s = f"**{s}**"
                    line.append(s)
            line.append(f"{np.nanmean(r.seconds):.0f}" if r.seconds else "–")
            out.append("| " + " | ".join(line) + " |")
        out.append("")
        out += _versus(bench, rs, ratio)
    if bench.notes:
        out += [bench.notes.strip(), ""]
    if env:
        out += ["Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()), ""]
    return "\n".join(out)


def _versus(bench: BenchSpec, rs: list[Row], ratio: Any) -> list[str]:
    """The highlighted method's mean DSC against the best other row at the same ratio, and against the
    best other prompt-free row (rows scored with ground-truth prompts solve an easier task)."""
    mine = [r for r in rs if r.id == bench.highlight and r.ratio == ratio]
    others = [r for r in rs if r.id != bench.highlight and r.ratio == ratio and np.isfinite(r.stat(MEAN, "dice")[0])]
    if not bench.highlight or not mine or not others:
        return []
    me, out = mine[0], []
    a = me.stat(MEAN, "dice")[0]
    groups = [("row", others), ("prompt-free row", [r for r in others if not r.prompted])]
    for what, pool in groups if me.prompted is False and any(r.prompted for r in others) else groups[:1]:
        if not pool:
            continue
        best = max(pool, key=lambda r: r.stat(MEAN, "dice")[0])
        b = best.stat(MEAN, "dice")[0]
        out.append(f"{me.label}: {100 * a:.2f} % DSC, {'ahead of' if a > b else 'behind'} the best other {what} at "
                   f"this ratio, {best.label} ({100 * b:.2f} %; difference {100 * (a - b):+.2f} points, "
                   f"n = {len(me.seeds)} / {len(best.seeds)} seeds).")
    return [" ".join(out), ""] if out else []


def csv_text(rows: list[Row], classes: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    cols = _columns(classes)
    w.writerow(["method", "id", "ratio", "n_seeds", "seeds"] +
               [f"{c}_{m}_{s}" for c in cols for m in METRICS for s in ("mean", "std")] + ["seconds_per_cell"])
    for r in rows:
        vals = []
        for c in cols:
            for m in METRICS:
                vals += [f"{x:.6g}" for x in r.stat(c, m)]
        w.writerow([r.label, r.id, "" if r.ratio is None else r.ratio, len(r.seeds), " ".join(map(str, r.seeds)),
                    *vals, f"{np.nanmean(r.seconds):.1f}" if r.seconds else ""])
    return buf.getvalue()


def plot_dice(bench: BenchSpec, rows: list[Row], path: Path) -> Path:
    """Bar plot of the mean DSC (± std over seeds) per method, one group of bars per labelled ratio."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups = blocks(bench, rows)
    labels = list(dict.fromkeys(r.label for _, rs in groups for r in rs))
    fig = Figure(figsize=(max(6.0, 0.9 * len(labels) * len(groups) + 2), 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    width = 0.8 / max(1, len(groups))
    x = np.arange(len(labels))
    for gi, (ratio, rs) in enumerate(groups):
        by = {r.label: r for r in rs}
        means = [100 * by[lab].stat(MEAN, "dice")[0] if lab in by else np.nan for lab in labels]
        stds = [100 * by[lab].stat(MEAN, "dice")[1] if lab in by else 0.0 for lab in labels]
        ax.bar(x + (gi - (len(groups) - 1) / 2) * width, means, width, yerr=stds, capsize=3,
               label=f"{ratio_label(ratio)} labelled" if ratio is not None else None)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("DSC % (test split)")
    ax.set_title(bench.title or bench.name, fontsize=10)
    finite = [100 * r.stat(MEAN, "dice")[0] for r in rows if np.isfinite(r.stat(MEAN, "dice")[0])]
    if finite:
        ax.set_ylim(max(0.0, min(finite) - 10), 100)
    if len(groups) > 1 or groups[0][0] is not None:
        ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png"))
    return Path(path)


def write_tables(bench: BenchSpec, cells: list[Cell], out: Path, tables_dir: Path,
                 env: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write results.csv/json/md and results_dice.png for the finished cells of ``cells``."""
    rows, classes, records = collect(cells, out)
    tables_dir = Path(tables_dir)
    units = records[0]["units"] if records else "mm"
    paths = {"csv": tables_dir / "results.csv", "json": tables_dir / "results.json", "md": tables_dir / "results.md",
             "png": tables_dir / "results_dice.png"}
    atomic_write_text(paths["csv"], csv_text(rows, classes))
    rows_json = [{"method": r.label, "id": r.id, "ratio": r.ratio, "seeds": r.seeds,
                  "mean": {c: {m: r.stat(c, m)[0] for m in METRICS} for c in _columns(classes)},
                  "std_over_seeds": {c: {m: r.stat(c, m)[1] for m in METRICS} for c in _columns(classes)},
                  "seconds_per_cell": float(np.nanmean(r.seconds)) if r.seconds else None} for r in rows]
    atomic_write_json(paths["json"], {"bench": bench.name, "title": bench.title, "classes": classes, "rows": rows_json,
                                      "cells": records, "environment": env or {},
                                      "total_cell_seconds": float(sum(sum(r.seconds) for r in rows))})
    atomic_write_text(paths["md"], markdown(bench, rows, classes, env, units))
    if rows:
        plot_dice(bench, rows, paths["png"])
    return paths
