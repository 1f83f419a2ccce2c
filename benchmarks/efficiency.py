"""Table-7-like efficiency table: parameters, MACs, peak memory and latency of the students, the
U-Net/V-Net baselines and the teachers (random weights), batch 1, on the CPU with 2 threads.

    python benchmarks/efficiency.py                 # prints the table, writes benchmarks/results/efficiency.md
    python benchmarks/efficiency.py --runs 5 --slow-runs 3 --threads 2 --device cpu

Latency: one warm-up call, then the median of N timed calls (N = --slow-runs for MedSAM ViT-B at 1024²,
SAM-Med3D and the 3D networks at 128³, --runs otherwise). Peak memory on the CPU is the growth of the
process's resident set during the timed calls (an upper bound of the activations; see
``uncol.eval.efficiency.profile_model``). Teachers: image encoder + one prompt through the mask decoder.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from uncol.eval.profile import default_profile_entries, latency_ratios, profile_table

SLOW = ("MedSAM ViT-B (teacher) 1024²", "SAM-Med3D (teacher) 128³", "V-Net (MT/UA-MT/BCP group) 128³",
        "UnCoL student 128³")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--slow-runs", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "efficiency.md"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    md, rows = profile_table(default_profile_entries(), device=a.device, warmup=1, runs=a.runs,
                             runs_for={k: a.slow_runs for k in SLOW}, log=lambda s: print(s, flush=True))
    wall = time.perf_counter() - t0
    r2 = latency_ratios(rows, "UnCoL student 256²", ["LiteMedSAM (teacher) 256²", "MedSAM ViT-B (teacher) 1024²"])
    r3 = latency_ratios(rows, "UnCoL student 128³", ["SAM-Med3D (teacher) 128³"])
    ratios = [f"- 2D student latency / {k}: {v:.3f} ({1 / v:.1f}× faster)" for k, v in r2.items()]
    ratios += [f"- 3D student latency / {k}: {v:.3f}" for k, v in r3.items()]
    dev = a.device if a.device == "cpu" else torch.cuda.get_device_name(torch.device(a.device))
    text = "\n".join([
        "# Efficiency (Table 7), measured",
        "",
        (f"Machine: {cpu_name()} ({dev}), torch {torch.__version__}, {a.threads} threads; batch 1; "
         f"latency = median of N runs after 1 warm-up; wall time of this script {wall:.0f} s."),
        ("Command: `python benchmarks/efficiency.py" + (f" --threads {a.threads}" if a.threads != 2 else "") + "`"),
        "",
        md,
        "",
        *ratios,
        "",
        ("MACs: `paper` = conv + linear (thop convention, as the paper's table), `full` = all matmuls "
         "(torch.utils.flop_counter / 2). Teachers use random weights (timing only). Paper Table 7 "
         "(RTX 3090): MedSAM 93.74 M / 371.46 G, SAM-Med3D 100.51 M / 186.44 G, U-Net 1.81 M / 3.01 G, "
         "V-Net 9.44 M / 97.91 G, UnCoL 2D 3.53 M / 3.60 G, UnCoL 3D 13.94 M / 144.45 G."),
        "",
    ])
    print(text)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
