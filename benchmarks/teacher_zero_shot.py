"""LiteMedSAM (or another teacher) zero-shot Dice with ground-truth boxes, tight and jittered.

    python benchmarks/teacher_zero_shot.py                       # 20 HC18 images, jitter 0 and 20 px
    python benchmarks/teacher_zero_shot.py --dataset msd_task04_hippocampus --cases 5   # 3D as 2D slices

Datasets are read from ../shared/data (``$UNCOL_SHARED_DATA``); a folder without ``dataset.json`` (HC18:
``images/NNN_HC.png`` + ``masks/NNN_HC_mask.png``) is described in a temporary folder first. Jitter is in
px of MedSAM's 1024-px frame (SPEC §5). Images are read raw (``normalize: none``): the teacher
min-max scales them itself. Prints Dice/HD95 and the wall time of each run.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from uncol.config import DataConfig, TeacherConfig
from uncol.data import DatasetSpec, import_folder
from uncol.eval.prompted import zero_shot
from uncol.teachers import build_teacher

SHARED = Path(os.environ.get("UNCOL_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def load_spec(root: Path, tmp: Path) -> DatasetSpec:
    if (root / "dataset.json").is_file():
        return DatasetSpec.load(root)
    return import_folder(root / "images", root / "masks", tmp, label_suffix="_mask",
                         labels={0: "background", 1: "head"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="hc18_fetal_head_us")
    ap.add_argument("--teacher", default="litemedsam")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--cases", type=int, default=20, help="the first N cases (sorted ids)")
    ap.add_argument("--jitter", type=float, nargs="+", default=[0.0, 20.0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    teacher = build_teacher(TeacherConfig(name=a.teacher, checkpoint=a.checkpoint, mode="online"), None)
    assert teacher is not None
    with tempfile.TemporaryDirectory() as tmp:
        spec = load_spec(SHARED / a.dataset, Path(tmp))
        ids = sorted(spec.case_ids)[: a.cases]
        for j in a.jitter:
            t0 = time.perf_counter()
            res = zero_shot(teacher, spec, ids, DataConfig(normalize="none"), jitter_px=j, seed=a.seed, progress=False)
            wall = time.perf_counter() - t0
            per_class = ", ".join(f"{k} {v['dice']:.4f}" for k, v in res["per_class"].items())
            print(f"{a.teacher} {a.dataset} n={res['num_cases']} jitter={j:g}px@1024: mean Dice "
                  f"{res['mean']['dice']:.4f} ± {res['std']['dice']:.4f} ({per_class}); "
                  f"HD95 {res['mean']['hd95']:.2f} mm; wall {wall:.1f} s")


if __name__ == "__main__":
    main()
