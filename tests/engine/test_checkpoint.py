"""Checkpoints: safe loading refuses code, architecture mismatches name keys, writes are atomic."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from uncol.cli import main
from uncol.config import Config, ModelConfig, to_dict
from uncol.engine.checkpoint import (
    FORMAT_VERSION,
    load_checkpoint,
    load_state_strict,
    safe_load,
    save_checkpoint,
)
from uncol.errors import CheckpointError
from uncol.models import build_model
from uncol.runtime import atomic_torch_save, atomic_write_text

DEMO = Path(__file__).resolve().parents[2] / "src" / "uncol" / "assets" / "demo" / "hc18"
SMALL = {"feature_chns": [2, 4, 4, 8, 8]}


class _Evil:
    """Unpickling this calls ``Path(marker).write_text("pwned")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def _unet_checkpoint(path: Path, params: dict, state_params: dict | None = None) -> None:
    """An uncol checkpoint whose config says ``params`` and whose weights come from ``state_params``."""
    cfg = Config(model=ModelConfig(name="unet", params=params))
    net = build_model(ModelConfig(name="unet", params=state_params or params), spatial_dims=2, num_classes=2)
    save_checkpoint({"config": to_dict(cfg), "labels": {"0": "background", "1": "head"}, "num_classes": 2,
                     "spatial_dims": 2, "model": net.state_dict()}, path)


def test_crafted_pickle_is_refused_and_runs_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "model": _Evil(marker)}, evil)
    rc = main(["evaluate", "--checkpoint", str(evil), "--data", str(DEMO), "--out", str(tmp_path / "ev")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "weights_only" in err and "evil.pt" in err, err
    assert not marker.exists() and not (tmp_path / "ev").exists()
    # the control: the unsafe loader would indeed have run the payload
    torch.load(evil, weights_only=False)
    assert marker.read_text() == "pwned"


def test_plain_pickle_file_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "old.pkl"
    p.write_bytes(pickle.dumps({"a": _Evil(tmp_path / "m")}))
    with pytest.raises(CheckpointError, match="old.pkl"):
        safe_load(p)
    assert not (tmp_path / "m").exists()


def test_checkpoint_carries_config_and_format_version(tmp_path: Path) -> None:
    _unet_checkpoint(tmp_path / "a.pt", SMALL)
    ck = load_checkpoint(tmp_path / "a.pt")
    assert ck["format_version"] == FORMAT_VERSION and ck["config"]["model"]["params"] == SMALL
    torch.save({**ck, "format_version": FORMAT_VERSION + 1}, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="upgrade uncol"):
        load_checkpoint(tmp_path / "new.pt")


def test_another_architecture_names_the_differing_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small = build_model(ModelConfig(name="unet", params=SMALL), spatial_dims=2, num_classes=2)
    wide = build_model(ModelConfig(name="unet", params={"feature_chns": [4, 8, 8, 16, 16]}), spatial_dims=2, num_classes=2)
    with pytest.raises(CheckpointError,
                       match=r"shape mismatches \(e\.g\. in_conv\.\S+: file \(4, 1, 3, 3\) vs model \(2, 1, 3, 3\)"):
        load_state_strict(small, wide.state_dict(), "x.pt")
    head = nn.Sequential(nn.Conv2d(1, 2, 1))
    with pytest.raises(CheckpointError, match=r"missing 2 keys \(e\.g\. 0\.weight, 0\.bias\); unexpected"):
        load_state_strict(head, small.state_dict(), "x.pt")
    # through the CLI: the config says one width, the weights are another's
    _unet_checkpoint(tmp_path / "mix.pt", SMALL, {"feature_chns": [4, 8, 8, 16, 16]})
    rc = main(["evaluate", "--checkpoint", str(tmp_path / "mix.pt"), "--data", str(DEMO), "--split", "all",
               "--out", str(tmp_path / "ev")])
    err = capsys.readouterr().err
    assert rc == 2 and "another architecture" in err and "in_conv" in err and err.count("\n") == 1, err


def test_resume_with_another_model_names_the_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "data": {"root": str(DEMO), "size": [32, 32], "split": {"ratios": [0.9, 0.0, 0.1], "labeled": 2}},
        "model": {"name": "unet", "params": SMALL},
        "train": {"iterations": 2, "batch_size": 2, "threads": 1, "device": "cpu"}}))
    threads = torch.get_num_threads()
    try:
        assert main(["train", str(cfg), "--out", str(tmp_path / "run")]) == 0
        before = (tmp_path / "run" / "last.pt").read_bytes()
        capsys.readouterr()
        rc = main(["train", str(cfg), "--out", str(tmp_path / "run"), "--resume", "--set", "train.iterations=4",
                   "--set", "model.params={feature_chns: [4, 8, 8, 16, 16]}"])
        err = capsys.readouterr().err  # a config that differs from the run's own is refused, naming the keys
        assert rc == 2 and "model.params.feature_chns" in err and "train.iterations" in err and err.count("\n") == 1, err
        # a run folder whose config.yaml was edited by hand: the weights no longer fit, named by key
        own = tmp_path / "run" / "config.yaml"
        edited = yaml.safe_load(own.read_text())
        edited["model"]["params"]["feature_chns"] = [4, 8, 8, 16, 16]
        own.write_text(yaml.safe_dump(edited))
        rc = main(["train", "--out", str(tmp_path / "run"), "--resume", "--extend", "--set", "train.iterations=4"])
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err
    assert rc == 2 and "another architecture" in err and "student.in_conv" in err and err.count("\n") == 1, err
    assert (tmp_path / "run" / "last.pt").read_bytes() == before


def test_atomic_write_leaves_the_old_file_when_the_writer_dies(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    atomic_torch_save({"v": torch.ones(2)}, target)

    def boom(p: Path) -> None:
        p.write_bytes(b"half a checkp")
        raise KeyboardInterrupt

    from uncol.runtime import atomic_write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, boom)
    assert torch.equal(safe_load(target)["v"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    atomic_write_text(tmp_path / "a.json", json.dumps({}))
    assert (tmp_path / "a.json").stat().st_mode & 0o044  # readable by others: not mkstemp's 0600


def test_garbage_bytes_always_give_checkpoint_error(tmp_path: Path) -> None:
    """Random bytes reach the unpickler's internals (IndexError, KeyError, struct errors ...): every one of
    them must come out as one CheckpointError line naming the file, never a traceback."""
    gen = torch.Generator().manual_seed(0)
    p = tmp_path / "garbage.pt"
    for _ in range(300):
        n = int(torch.randint(1, 3000, (1,), generator=gen))
        p.write_bytes(bytes(torch.randint(0, 256, (n,), generator=gen, dtype=torch.uint8).tolist()))
        with pytest.raises(CheckpointError, match="garbage.pt"):
            safe_load(p)
