"""1-process vs 2-process (DDP, gloo) training throughput on CPU at the same global batch.

Runs ``uncol train`` three times on the embedded HC18 demo data (supervised U-Net, no validation):
1 process x 1 thread, 1 process x 2 threads (both global batch B) and ``--nproc 2`` x 1 thread each
(per-rank batch B/2). Prints iterations/s from each run's ``summary.json`` (the training loop only,
start-up excluded) and the wall time of the whole command.

    python benchmarks/distributed_throughput.py [--iterations 40] [--size 128] [--batch 4]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "src" / "uncol" / "assets" / "demo" / "hc18"


def run(tmp: Path, name: str, batch: int, threads: int, nproc: int, iterations: int, size: int) -> dict:
    cfg = {"data": {"root": str(DEMO), "spatial_dims": 2, "size": [size, size],
                    "split": {"ratios": [0.8, 0.0, 0.2], "labeled": 16}},
           "model": {"name": "unet"}, "method": {"name": "supervised"},
           "train": {"iterations": iterations, "batch_size": batch, "threads": threads, "device": "cpu",
                     "save_every": 10**6, "log_every": 10}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp / name
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "uncol", "train", str(path), "--out", str(out), "--nproc", str(nproc)],
                   check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.time() - t0
    loop = json.loads((out / "summary.json").read_text())["wall_time_s"]
    return {"run": name, "processes": nproc, "threads_each": threads, "batch_per_process": batch,
            "it_per_s": round(iterations / loop, 2), "loop_s": loop, "command_wall_s": round(wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4, help="global batch (even)")
    a = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"python {platform.python_version()}; U-Net (1.81 M params), {a.size}x{a.size}, global batch {a.batch}, "
          f"{a.iterations} iterations")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows.append(run(tmp, "1proc_1thread", a.batch, 1, 1, a.iterations, a.size))
        rows.append(run(tmp, "1proc_2threads", a.batch, 2, 1, a.iterations, a.size))
        rows.append(run(tmp, "2proc_1thread", a.batch // 2, 1, 2, a.iterations, a.size))
    print(f"{'run':16s} {'procs':>5s} {'thr':>4s} {'batch/proc':>10s} {'it/s':>7s} {'loop s':>7s} {'cmd s':>6s}")
    for r in rows:
        print(f"{r['run']:16s} {r['processes']:5d} {r['threads_each']:4d} {r['batch_per_process']:10d} "
              f"{r['it_per_s']:7.2f} {r['loop_s']:7.1f} {r['command_wall_s']:6.1f}")


if __name__ == "__main__":
    main()
