"""Bench cells: ids checked, paths inside --out, one lock per cell so that processes share a grid."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from uncol.bench import lock
from uncol.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _dataset(root: Path, n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        lab = np.zeros((32, 32), np.uint8)
        lab[8:20, 10:22] = 1
        for folder, arr in (("imagesTr", rng.normal(size=(32, 32)).astype(np.float32)), ("labelsTr", lab)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(arr, np.eye(4)), str(root / folder / f"c{i}.nii.gz"))
    entries = [{"image": f"./imagesTr/c{i}.nii.gz", "label": f"./labelsTr/c{i}.nii.gz"} for i in range(n)]
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "fg"}, "training": entries}))
    return root


def _bench(tmp: Path, seeds: list[int], method_id: str = "sup") -> Path:
    bench = {"name": "tiny", "ratios": [2], "seeds": seeds,
             "base": {"data": {"root": str(_dataset(tmp / "ds")), "size": [32, 32], "augment": {"enabled": False},
                               "split": {"ratios": [0.5, 0.2, 0.3], "seed": 0}},
                      "model": {"name": "unet", "params": {"feature_chns": [2, 4, 4, 8, 8]}},
                      "train": {"iterations": 2, "batch_size": 1, "val_every": 2, "save_every": 2, "threads": 1,
                                "device": "cpu"}},
             "methods": [{"label": "Supervised", "id": method_id, "method": "supervised"}]}
    p = tmp / "tiny.yaml"
    p.write_text(yaml.safe_dump(bench))
    return p


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_lock_is_exclusive_and_a_dead_owners_lock_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "cell" / ".lock"
    assert lock.acquire(path) and not lock.acquire(path)  # held by this (live) process
    assert lock.holder(path)["pid"] == os.getpid()
    lock.release(path)
    assert not path.exists()
    path.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "time": 0}))
    assert lock.holder(path) is None and lock.acquire(path)  # stale: taken over
    assert json.loads(path.read_text())["pid"] == os.getpid()
    path.write_text(json.dumps({"pid": 1, "host": "another-host", "time": 0}))
    assert not lock.acquire(path) and "another-host" in lock.describe(lock.holder(path), path)


def test_a_method_id_leading_outside_out_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = _bench(tmp_path, [0], method_id="../../x")
    capsys.readouterr()
    rc = main(["bench", str(bench), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and "../../x" in err[0], err
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "x").exists()


@pytest.mark.parametrize("bad", ["a/b", ".hidden", "-x", "x y", ".."])
def test_ids_are_folder_names(tmp_path: Path, bad: str) -> None:
    from uncol.bench.grid import load_bench
    from uncol.errors import ConfigError

    with pytest.raises(ConfigError, match="must match"):
        load_bench(_bench(tmp_path, [0], method_id=bad))


@pytest.mark.slow
def test_two_bench_processes_share_a_grid_and_train_each_cell_once(tmp_path: Path) -> None:
    seeds = [0, 1, 2]
    bench, out = _bench(tmp_path, seeds), tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "uncol", "bench", str(bench), "--out", str(out), "--no-progress"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=240) for p in procs]
    for p, (so, se) in zip(procs, outputs):
        assert p.returncode == 0, so[-2000:] + se[-2000:]
    keys = {f"sup/n2/s{s}" for s in seeds}
    ran = [set(re.findall(r"\] (\S+): Dice", so)) for so, _ in outputs]
    assert not ran[0] & ran[1] and ran[0] | ran[1] == keys, ran  # shared, none twice
    for key in keys:
        d = out / "cells" / key
        assert (d / "metrics.json").is_file() and not (d / ".lock").exists()
        history = json.loads((d / "run.json").read_text())["history"]
        assert [h["event"] for h in history] == ["start"], (key, history)  # trained exactly once
