"""Does labelling the cases ``uncol suggest`` ranks first beat labelling random ones? (issue 18)

Protocol, per seed ``s`` (HC18 imported with ``uncol data import-folder``; a fixed subject-wise 70/10/20
split, seed 0, the same as ``benchmarks/knowledge_path.yaml``, so every seed is scored on the same test
images):

1. ``initial``: ``k0`` training images drawn at random (seed ``s``) are labelled; a supervised U-Net is
   trained on them (the budget below).
2. ``uncol suggest`` ranks the remaining training images with that model and the foundation teacher
   (LiteMedSAM prompted with the model's own boxes): Borda count of the student's mean entropy and
   ``1 - Dice(G, student)``.
3. Three arms add ``k`` images to the ``k0`` and retrain from scratch at the same budget:
   ``suggested`` (the top ``k`` of the ranking), ``random`` (``k`` drawn at random, seed ``1000 + s``) and
   ``uncertainty`` (the top ``k`` by the student's entropy alone: what peers' active-learning tools offer).
4. Each arm's best-validation checkpoint is scored on the test split at native resolution.

Reported: test Dice per arm and seed, and the paired per-image difference ``suggested - random`` (and
``suggested - uncertainty``) pooled over seeds with a bootstrap 95 % interval, plus the per-seed mean
differences. Several processes may run the same command: tasks are claimed with exclusive files, so two
workers train different cells (``--workers`` is only a label; start the command twice).

    python benchmarks/suggest_vs_random.py --data data/hc18 --out runs/suggest_vs_random   # a worker
    python benchmarks/suggest_vs_random.py --data data/hc18 --out runs/suggest_vs_random --report \\
        --tables benchmarks/results/suggest_vs_random
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("suggested", "random", "uncertainty")


def base_config(data: str, size: int, iterations: int, seed: int, split_file: Path, threads: int) -> Any:
    """The supervised U-Net row of ``benchmarks/knowledge_path.yaml`` with an explicit split file."""
    from uncol.config import load_config

    sets = [
        f"data.root={data}", f"data.size=[{size}, {size}]",
        "data.augment={enabled: true, flip: true, rotate_deg: 20.0}",
        f"data.split={{file: {split_file}}}",
        "model.name=unet", "teacher.name=none", "method={name: supervised, params: {}}",
        f"train.iterations={iterations}", "train.batch_size=4", "train.labeled_bs=2", "train.unlabeled_bs=2",
        "train.lr=0.01", f"train.val_every={max(1, iterations // 4)}", f"train.save_every={max(1, iterations // 4)}",
        "train.log_every=50", f"train.threads={threads}", "train.device=cpu", f"train.seed={seed}",
    ]
    return load_config(ROOT / "configs" / "hc18_2d_uncol.yaml", sets)


def base_split(data: str) -> Any:
    """Train/val/test of the knowledge-path grid (subject-wise, seed 0); labelled sets are chosen here."""
    from uncol.config import SplitConfig
    from uncol.data.dataset import DatasetSpec
    from uncol.data.splits import make_split

    spec = DatasetSpec.load(data)
    return make_split([c.id for c in spec.cases], SplitConfig(ratios=(0.7, 0.1, 0.2), seed=0, labeled=1.0,
                                                             group_by=r"^(\d+)_"))


def write_split(path: Path, split: Any, labeled: list[str]) -> None:
    from uncol.runtime import atomic_write_json

    lab = set(labeled)
    atomic_write_json(path, {"train": split.train, "val": split.val, "test": split.test,
                             "labeled": sorted(lab), "unlabeled": [c for c in split.train if c not in lab],
                             "seed": 0})


def train_and_score(d: Path, cfg: Any) -> dict[str, Any]:
    """Train into ``d`` (resumed if cut), score ``best.pt`` on the test split, write ``d/result.json``."""
    from uncol.engine.loop import train
    from uncol.engine.runfolder import holds_run
    from uncol.eval.evaluate import evaluate_checkpoint
    from uncol.runtime import atomic_write_json

    t0 = time.time()
    if not (d / "final.pt").is_file():
        train(cfg, d, resume=bool(holds_run(d)), progress=False)
    t1 = time.time()
    res = evaluate_checkpoint(d / "best.pt", cfg.data.root, d / "eval", split="test", device="cpu")
    out = {"dice": res["mean"]["dice"], "per_case": {c["case"]: c["mean"]["dice"] for c in res["per_case"]},
           "train_s": round(t1 - t0, 1), "eval_s": round(time.time() - t1, 1)}
    atomic_write_json(d / "result.json", out)
    return out


def choose(arm: str, ranking: list[dict], unlabeled: list[str], k: int, seed: int) -> list[str]:
    """The ``k`` cases an arm labels next, from ``suggest``'s ranked rows."""
    if arm == "suggested":
        return [r["case"] for r in ranking[:k]]
    if arm == "uncertainty":
        return [r["case"] for r in sorted(ranking, key=lambda r: -float(r["entropy"]))[:k]]
    rng = np.random.default_rng(1000 + seed)
    return sorted(rng.choice(sorted(unlabeled), size=k, replace=False).tolist())


def claim(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)
    return True


def run_initial(a: argparse.Namespace, split: Any, s: int) -> None:
    from uncol.eval.suggest import suggest

    d = Path(a.out) / f"s{s}" / "initial"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(s)
    labeled = sorted(rng.choice(sorted(split.train), size=a.k0, replace=False).tolist())
    write_split(d.parent / "split_initial.json", split, labeled)
    train_and_score(d, base_config(a.data, a.size, a.iterations, s, d.parent / "split_initial.json", a.threads))
    t0 = time.time()
    rows = suggest(d / "best.pt", a.data, d.parent / "suggest", split="unlabeled", teacher=a.teacher,
                   device="cpu", top=12, progress=False)
    (d.parent / "suggest_s.txt").write_text(f"{time.time() - t0:.1f}\n")
    print(f"[s{s}] initial done; suggest ranked {len(rows)} cases", flush=True)


def read_ranking(seed_dir: Path) -> list[dict]:
    with open(seed_dir / "suggest" / "suggest.csv", newline="") as f:
        return list(csv.DictReader(f))


def run_arm(a: argparse.Namespace, split: Any, s: int, arm: str) -> None:
    seed_dir = Path(a.out) / f"s{s}"
    initial = json.loads((seed_dir / "split_initial.json").read_text())
    picked = choose(arm, read_ranking(seed_dir), initial["unlabeled"], a.k, s)
    (seed_dir / arm).mkdir(parents=True, exist_ok=True)
    write_split(seed_dir / f"split_{arm}.json", split, initial["labeled"] + picked)
    (seed_dir / arm / "picked.json").write_text(json.dumps(picked, indent=1))
    r = train_and_score(seed_dir / arm, base_config(a.data, a.size, a.iterations, s, seed_dir / f"split_{arm}.json",
                                                    a.threads))
    print(f"[s{s}] {arm}: test Dice {100 * r['dice']:.2f}", flush=True)


def tasks(a: argparse.Namespace) -> list[tuple[int, str]]:
    return [(s, "initial") for s in a.seeds] + [(s, arm) for arm in a.arms for s in a.seeds]


def worker(a: argparse.Namespace) -> None:
    split = base_split(a.data)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    todo = tasks(a)
    while True:
        pending = [t for t in todo if not (out / f"s{t[0]}" / t[1] / "result.json").is_file()]
        if not pending:
            return
        ran = False
        for s, name in pending:
            ready = name == "initial" or (out / f"s{s}" / "suggest" / "suggest.csv").is_file()
            if not ready:
                continue
            (out / f"s{s}").mkdir(parents=True, exist_ok=True)
            if not claim(out / f"s{s}" / f"{name}.claim"):
                continue
            print(f"[s{s}] {name} started {time.strftime('%H:%M:%S')}", flush=True)
            (run_initial(a, split, s) if name == "initial" else run_arm(a, split, s, name))
            ran = True
            break
        if not ran:
            if all((out / f"s{s}" / f"{n}.claim").is_file() for s, n in pending):
                return  # the rest is another worker's
            time.sleep(20)


def bootstrap_ci(x: np.ndarray, n: int = 10000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n, len(x)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def pick_stats(rows: dict[str, dict], cases: list[str]) -> str:
    """Mean entropy, disagreement and foreground fraction of ``cases`` (``suggest.csv`` rows) and their subjects."""
    m = [np.mean([float(rows[c][k]) for c in cases]) for k in ("entropy", "disagreement", "fg_fraction")]
    subjects = {(re.match(r"^(\d+)_", c) or re.match(r"(.*)", c)).group(1) for c in cases}
    return f"{m[0]:.3f} | {m[1]:.3f} | {m[2]:.3f} | {len(subjects)}"


def picks_table(a: argparse.Namespace, out: Path, res: dict[int, dict[str, Any]]) -> list[str]:
    """What each arm labelled: mean entropy, teacher-student disagreement and foreground fraction of its
    picks (as ``suggest`` scored them with the initial model) against the whole unlabelled pool, and how
    many subjects the ``k`` picks come from; plus the wall time of ``suggest`` and of each training."""
    lines = ["| seed | set | entropy | disagreement | fg fraction | subjects | train s |", "|---|---|---|---|---|---|---|"]
    for s in sorted(res):
        f = out / f"s{s}" / "suggest" / "suggest.csv"
        if not f.is_file():
            continue
        rows = {r["case"]: r for r in read_ranking(out / f"s{s}")}
        secs = (out / f"s{s}" / "suggest_s.txt")
        lines.append(f"| {s} | unlabelled pool ({len(rows)}) | {pick_stats(rows, list(rows))} | suggest: "
                     f"{secs.read_text().strip() if secs.is_file() else '–'} |")
        for arm in a.arms:
            pf = out / f"s{s}" / arm / "picked.json"
            if pf.is_file() and arm in res[s]:
                lines.append(f"| {s} | {arm} | {pick_stats(rows, json.loads(pf.read_text()))} | {res[s][arm]['train_s']:.0f} |")
    return lines


def report(a: argparse.Namespace) -> str:
    out = Path(a.out)
    res: dict[int, dict[str, Any]] = {}
    for s in a.seeds:
        for name in ("initial", *a.arms):
            f = out / f"s{s}" / name / "result.json"
            if f.is_file():
                res.setdefault(s, {})[name] = json.loads(f.read_text())
    n_test = len(next(iter(next(iter(res.values())).values()))["per_case"])
    lines = [(f"Test Dice (%) on the {n_test} test images; k0 = {a.k0} labelled, + k = {a.k}; supervised U-Net, "
              f"{a.iterations} iterations at {a.size}²"), "",
             "| seed | initial (k0) | " + " | ".join(f"+{a.k} {arm}" for arm in a.arms) + " |",
             "|---|---|" + "---|" * len(a.arms)]
    for s in sorted(res):
        cells = [f"{100 * res[s][n]['dice']:.2f}" if n in res[s] else "–" for n in ("initial", *a.arms)]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    means = []
    for n in ("initial", *a.arms):
        v = [100 * res[s][n]["dice"] for s in res if n in res[s]]
        means.append(f"{np.mean(v):.2f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.2f}" if v else "–")
    lines += ["| mean ± sd over seeds | " + " | ".join(means) + " |", ""]
    summary: dict[str, Any] = {"results": {str(s): {n: {"dice": r["dice"], "train_s": r["train_s"]}
                                                   for n, r in v.items()} for s, v in res.items()}}
    for other in [x for x in a.arms if x != "suggested"]:
        diffs, per_seed = [], []
        for cells in res.values():
            if "suggested" in cells and other in cells:
                p, q = cells["suggested"]["per_case"], cells[other]["per_case"]
                d = [100 * (p[c] - q[c]) for c in sorted(p)]
                diffs += d
                per_seed.append(f"{np.mean(d):+.2f}")
        if not diffs:
            continue
        x = np.asarray(diffs)
        lo, hi = bootstrap_ci(x)
        verdict = "no difference" if lo <= 0 <= hi else ("suggested better" if lo > 0 else f"{other} better")
        lines.append(f"- suggested − {other}: {x.mean():+.2f} points, 95 % bootstrap CI [{lo:+.2f}, {hi:+.2f}] over "
                     f"{len(x)} (seed, image) pairs; per seed {', '.join(per_seed)}; wins {int((x > 0).sum())}, "
                     f"losses {int((x < 0).sum())} → {verdict}")
        summary[f"suggested_minus_{other}"] = {"mean": float(x.mean()), "ci95": [lo, hi], "pairs": len(x),
                                                "per_seed": per_seed}
    lines += ["", *picks_table(a, out, res)]
    text = "\n".join(lines) + "\n"
    if a.tables:
        t = Path(a.tables)
        t.parent.mkdir(parents=True, exist_ok=True)
        t.with_suffix(".md").write_text(text)
        t.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/hc18", help="HC18 imported with uncol data import-folder")
    p.add_argument("--out", default="runs/suggest_vs_random", help="run folders (checkpoints: do not commit)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--k0", type=int, default=12, help="labelled images of the initial model")
    p.add_argument("--k", type=int, default=12, help="images each arm labels next")
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--teacher", default="litemedsam")
    p.add_argument("--report", action="store_true", help="only collect the finished cells into the table")
    p.add_argument("--tables", default=None, help="write the table as TABLES.md / TABLES.json")
    a = p.parse_args()
    if not a.report:
        worker(a)
    print(report(a))


if __name__ == "__main__":
    main()
