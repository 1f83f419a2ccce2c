"""UnCoL stage 2 with the authors' copy-paste pairs (``stage2_pairs: halves``) vs every pair both ways (``all``).

    python benchmarks/stage2_pairs.py runs/bench/knowledge_path --out runs/bench/stage2_pairs --data data/hc18 \\
        --pairs halves all --seeds 0 1 2
    python benchmarks/paired_cells.py runs/bench/stage2_pairs --rows stage2_halves stage2_all \\
        --pairs stage2_halves:stage2_all

Both arms start from the same stage-1 student of a finished ``knowledge_path`` cell (``--row``, default
``dpkd_both``: the default UnCoL after stage 1, its ``final.pt``) and run stage 2 only, with that cell's config
(split, size, augmentation, teacher cache, ``stage2_iterations``); only ``method.params.stage2_pairs`` differs.
The stage-1 projectors of L_vis are not in ``final.pt``: both arms start them afresh. Each arm's best validation
checkpoint is scored on the test split as ``uncol bench`` scores a cell, into
``OUT/cells/stage2_<pairs>/<ratio>/s<seed>/metrics.json`` (``paired_cells.py`` reads them). A finished cell
is skipped, so several processes can share the grid (``--pairs``/``--seeds`` pick their share).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import uncol.methods  # noqa: F401  (fills the registries)
from uncol.config import load_config
from uncol.engine.distributed import DistInfo
from uncol.engine.loop import Trainer
from uncol.eval.evaluate import evaluate_checkpoint
from uncol.runtime import atomic_write_json


def run(stage1: Path, out: Path, data: str, pairs: str, seed: int, ratio: str, row: str, threads: int,
        sets: list[str]) -> None:
    src = stage1 / "cells" / row / ratio / f"s{seed}"
    d = out / "cells" / f"stage2_{pairs}" / ratio / f"s{seed}"
    if (d / "metrics.json").is_file():
        print(f"{d}: done", flush=True)
        return
    if not (src / "final.pt").is_file():
        raise SystemExit(f"{src / 'final.pt'}: no finished stage-1 cell there; run the knowledge_path grid first")
    torch.set_num_threads(threads)
    cfg = load_config(src / "config.yaml", [f"method.params.stage2_pairs={pairs}", f"data.root={data}", *sets])
    t0 = time.time()
    trainer = Trainer(cfg, d, resume=False, stages=["stage2"], progress=False, dist=DistInfo(), stop_after=None,
                      overwrite=True)
    state = torch.load(src / "final.pt", map_location="cpu", weights_only=True)["model"]
    trainer.method.student.load_state_dict(state)  # the stage-1 student; stage 2 resets S from it
    trainer.run()
    t1 = time.time()
    res = evaluate_checkpoint(d / "best.pt", cfg.data.root, d / "eval", split="test", device=cfg.train.device)
    split_same = json.loads((src / "split.json").read_text()) == json.loads((d / "split.json").read_text())
    res["bench"] = {"method": f"UnCoL stage 2 ({pairs})", "id": f"stage2_{pairs}", "ratio": ratio, "seed": seed,
                    "stage1_from": str(src / "final.pt"), "same_split_as_stage1": split_same,
                    "timing": {"train_s": round(t1 - t0, 1), "eval_s": round(time.time() - t1, 1)}}
    atomic_write_json(d / "metrics.json", res)
    (d / "last.pt").unlink(missing_ok=True)
    print(f"{d}: test Dice {100 * res['mean']['dice']:.2f} %, train {t1 - t0:.0f} s, same split {split_same}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage1", type=Path, help="the knowledge_path bench folder (its cells hold the stage-1 students)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", required=True, help="the HC18 dataset folder the stage-1 cells were trained on")
    ap.add_argument("--pairs", nargs="+", default=["halves", "all"], choices=["halves", "all"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--ratio", default="10pct")
    ap.add_argument("--row", default="dpkd_both")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], help="extra config overrides (KEY=VALUE), e.g. for a smoke run")
    a = ap.parse_args()
    for seed in a.seeds:
        for pairs in a.pairs:
            run(a.stage1, a.out, a.data, pairs, seed, a.ratio, a.row, a.threads, a.set)


if __name__ == "__main__":
    main()
