"""Mixed precision (``train.amp``) and ``train.channels_last`` train on CPU, and on CUDA when present."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from uncol.config import load_config
from uncol.engine.loop import train

DEMO = Path(__file__).resolve().parents[2] / "src" / "uncol" / "assets" / "demo" / "hc18"


def _run(tmp: Path, device: str, amp: str, channels_last: bool, iterations: int = 3) -> tuple[list[float], dict]:
    cfg = load_config(None, [f"data.root={DEMO}", "data.size=[32,32]", "data.split.ratios=[0.9,0.0,0.1]",
                             "data.split.labeled=4", "model.params={feature_chns: [4, 8, 8, 16, 16]}",
                             f"train.iterations={iterations}", "train.batch_size=2", "train.log_every=1",
                             "train.threads=1", f"train.device={device}", f"train.amp={amp}",
                             f"train.channels_last={str(channels_last).lower()}"])
    out = tmp / f"{device}-{amp}-{channels_last}"
    threads = torch.get_num_threads()
    try:
        train(cfg, out, progress=False)
    finally:
        torch.set_num_threads(threads)
    losses = [json.loads(x)["loss"] for x in (out / "log.jsonl").read_text().splitlines()]
    return losses, torch.load(out / "last.pt", weights_only=True)


def test_bf16_autocast_and_channels_last_train_on_cpu(tmp_path: Path) -> None:
    losses, ck = _run(tmp_path, "cpu", "bf16", True)
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert all(v.dtype == torch.float32 for v in ck["model"].values() if v.is_floating_point())  # fp32 master weights


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_and_channels_last_train_on_cuda(tmp_path: Path, amp: str) -> None:
    losses, ck = _run(tmp_path, "cuda", amp, True, iterations=5)
    assert len(losses) == 5 and all(math.isfinite(v) for v in losses)
    if amp == "fp16":
        assert ck["scaler"] is not None and ck["scaler"]["scale"] > 0  # the loss scaler is saved for resume
    else:
        assert ck["scaler"] is None
