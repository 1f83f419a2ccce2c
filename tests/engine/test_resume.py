"""Crash-safe runs: SIGKILL mid-run, ``--resume``, and the final weights equal an uninterrupted run's."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from uncol.cli import main

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "src" / "uncol" / "assets" / "demo" / "hc18"
TOTAL, SAVE_EVERY, KILL_AT = 60, 5, 10


@pytest.fixture
def restore_torch_globals():
    """``train.deterministic``/``train.threads`` change process-wide torch settings: put them back."""
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(det)


def _config(tmp: Path) -> Path:
    cfg = {
        "data": {"root": str(DEMO), "spatial_dims": 2, "size": [32, 32],
                 "split": {"ratios": [0.7, 0.1, 0.2], "labeled": 6}},  # augmentation on (seeded per sample)
        "model": {"name": "unet", "params": {"feature_chns": [4, 8, 8, 16, 16]}},  # dropout on (global RNG)
        "method": {"name": "supervised"},
        "train": {"iterations": TOTAL, "batch_size": 4, "save_every": SAVE_EVERY, "val_every": 20,
                  "log_every": 5, "threads": 1, "deterministic": True, "device": "cpu"},
        "eval": {"max_val_cases": 1},
    }
    p = tmp / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def _iteration(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=True, map_location="cpu")["iteration"])
    except Exception:  # noqa: BLE001  not there yet
        return -1


def _kill_after_checkpoint(cfg: Path, out: Path) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "uncol", "train", str(cfg), "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last, mtime, deadline = out / "last.pt", 0.0, time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            m = last.stat().st_mtime if last.exists() else 0.0
            if m != mtime:
                mtime = m
                if _iteration(last) >= KILL_AT:
                    proc.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.01)
        assert proc.wait(timeout=30) == -signal.SIGKILL, f"the run ended before it could be killed: {proc.stderr.read()[-1500:]}"
    finally:
        if proc.poll() is None:
            proc.kill()
    it = _iteration(last)
    assert KILL_AT <= it < TOTAL
    return it


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_uninterrupted_weights(tmp_path: Path, restore_torch_globals: None) -> None:
    cfg = _config(tmp_path)
    crashed = tmp_path / "crashed"
    at = _kill_after_checkpoint(cfg, crashed)
    ck = torch.load(crashed / "last.pt", weights_only=True)
    for key in ("format_version", "config", "model", "method", "optimizer", "scaler", "stage_index", "stage",
                "iteration", "rng", "generators", "loader", "best", "world_size"):
        assert key in ck, key
    assert ck["loader"]["streams"][0]["pos"] + ck["loader"]["streams"][0]["epoch"] > 0
    assert main(["train", str(cfg), "--out", str(crashed), "--resume"]) == 0
    assert main(["train", str(cfg), "--out", str(tmp_path / "straight")]) == 0
    a = torch.load(tmp_path / "straight" / "final.pt", weights_only=True)["model"]
    b = torch.load(crashed / "final.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=0, msg=f"killed at {at}")  # bitwise in practice
    # the log holds each iteration once: records written after the checkpoint by the killed run were dropped
    its = [json.loads(x)["iteration"] for x in (crashed / "log.jsonl").read_text().splitlines()
           if json.loads(x)["kind"] == "train"]
    assert its == list(range(SAVE_EVERY, TOTAL + 1, SAVE_EVERY))
    assert not list(crashed.glob(".*.tmp"))


@pytest.mark.parametrize("stop", [3, 5], ids=["at_stage_boundary", "inside_stage_2"])
def test_resume_of_a_two_stage_method(stop: int, tmp_path: Path, restore_torch_globals: None) -> None:
    """BCP (pretrain -> self-train, EMA teacher, its own generator) stopped after ``stop`` of 3 + 3 iterations."""
    from uncol.config import load_config
    from uncol.engine.loop import train

    cfg = load_config(None, [f"data.root={DEMO}", "data.size=[32,32]", "data.split.ratios=[0.8,0.0,0.2]",
                             "data.split.labeled=4", "model.params={feature_chns: [2, 4, 4, 8, 8]}",
                             "method.name=bcp", "train.iterations=3", "train.batch_size=2", "train.labeled_bs=2",
                             "train.unlabeled_bs=2", "train.save_every=1", "train.log_every=1", "train.threads=1",
                             "train.deterministic=true", "train.device=cpu"])
    assert train(cfg, tmp_path / "cut", progress=False, stop_after=stop)["stopped_at"] in (3, 2)
    train(cfg, tmp_path / "cut", resume=True, progress=False)
    train(cfg, tmp_path / "straight", progress=False)
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["method"]
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["method"]  # student + EMA teacher
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=0, msg=k)
