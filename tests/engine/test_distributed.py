"""Two processes on CPU (gloo) give the same training as one process with the same global batch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "src" / "uncol" / "assets" / "demo" / "hc18"
WORKER = Path(__file__).with_name("ddp_worker.py")
# Tolerance: the same arithmetic up to the order of float32 sums (gloo's all-reduce and the
# per-rank partial means); measured max difference 4.5e-8 (weights ~0.4), we allow 1e-5 absolute.
ATOL = 1e-5


def _cfg(tmp: Path, name: str, batch: int, method: str = "ce_only", model: str = "tiny_conv",
         iterations: int = 6, **model_params: object) -> Path:
    cfg = {
        "data": {"root": str(DEMO), "spatial_dims": 2, "size": [32, 32],
                 # 8 labelled cases: a multiple of the 2 ranks, so every global batch is the same set
                 "split": {"ratios": [0.8, 0.0, 0.2], "labeled": 8},
                 "augment": {"enabled": True}},  # seeded by global position: identical across world sizes
        "model": {"name": model, "params": model_params},
        "method": {"name": method},
        "train": {"iterations": iterations, "batch_size": batch, "save_every": 3, "log_every": 1,
                  "threads": 1, "deterministic": True, "device": "cpu"},
    }
    p = tmp / f"{name}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines()
            if json.loads(line)["kind"] == "train"]


@pytest.mark.slow
def test_two_ranks_match_one_process_with_the_same_global_batch(tmp_path: Path) -> None:
    """``uncol train --nproc 2`` (torchrun, gloo), 2 x batch 2, against 1 process x batch 4."""
    one, two = tmp_path / "one", tmp_path / "two"
    r1 = subprocess.run([sys.executable, str(WORKER), "train", str(_cfg(tmp_path, "one", 4)), "--out", str(one)],
                        env=_env(), capture_output=True, text=True, timeout=180, check=False)
    assert r1.returncode == 0, r1.stderr[-2000:]
    r2 = subprocess.run([sys.executable, str(WORKER), "train", str(_cfg(tmp_path, "two", 2)), "--out", str(two),
                         "--nproc", "2"], env=_env(), capture_output=True, text=True, timeout=180, check=False)
    assert r2.returncode == 0, r2.stderr[-3000:]
    summary = json.loads(r2.stdout[r2.stdout.index("{"):])  # printed once, by rank 0
    assert summary["world_size"] == 2 and r2.stdout.count('"world_size"') == 1
    a = torch.load(one / "final.pt", weights_only=True)["model"]
    b = torch.load(two / "final.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=ATOL, rtol=0)
    assert torch.load(two / "last.pt", weights_only=True)["world_size"] == 2
    # logged losses are averaged over the ranks: equal to the one-process loss of the global batch
    assert _losses(two) == pytest.approx(_losses(one), abs=1e-5)
    assert len(_losses(two)) == 6
    # only rank 0 wrote: no stray temp or probe files
    assert sorted(p.name for p in two.iterdir() if p.name != "tensorboard") == sorted(
        ["best.pt", "config.yaml", "final.pt", "last.pt", "log.jsonl", "run.json", "split.json", "summary.json"])
