"""Efficiency: parameter and MAC counts against hand formulas; the profile dict."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from uncol.eval.efficiency import _RssPeak, count_macs, count_params, profile_model


def test_conv2d_macs_hand_formula() -> None:
    m = nn.Conv2d(3, 8, kernel_size=3, padding=1, stride=2)
    macs = count_macs(m, (2, 3, 32, 32))
    out_positions = 2 * 16 * 16
    assert macs["macs_paper"] == macs["macs_exact"] == out_positions * 8 * 3 * 9
    assert macs["macs_full"] == macs["macs_exact"]


def test_grouped_conv3d_macs() -> None:
    m = nn.Conv3d(8, 4, kernel_size=(1, 3, 3), padding=(0, 1, 1), groups=2)
    assert count_macs(m, (1, 8, 4, 5, 6))["macs_exact"] == 4 * 5 * 6 * 4 * (8 // 2) * 9


def test_linear_macs_hand_formula() -> None:
    m = nn.Sequential(nn.Linear(10, 7), nn.ReLU(), nn.Linear(7, 3))
    macs = count_macs(m, (4, 5, 10))  # 20 tokens
    assert macs["macs_paper"] == macs["macs_full"] == 20 * (10 * 7 + 7 * 3)


def test_transposed_conv_conventions() -> None:
    m = nn.ConvTranspose3d(16, 8, kernel_size=2, stride=2)
    macs = count_macs(m, (1, 16, 4, 4, 4))
    exact = 4**3 * 16 * 8 * 8  # each input position scatters a 2x2x2 x 8 block
    assert macs["macs_exact"] == macs["macs_full"] == exact
    assert macs["macs_paper"] == 8**3 * 8 * 16 * 8 == 8 * exact  # thop: per output position


def test_attention_matmuls_only_in_full() -> None:
    class Attn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(16, 48, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q, k, v = self.qkv(x).chunk(3, -1)
            return (q @ k.transpose(1, 2)).softmax(-1) @ v

    macs = count_macs(Attn(), (1, 10, 16))
    assert macs["macs_paper"] == 10 * 16 * 48
    assert macs["macs_full"] == 10 * 16 * 48 + 2 * 10 * 10 * 16


def test_count_params_exclude() -> None:
    m = nn.Module()
    m.body = nn.Linear(4, 4)  # 20
    m.teacher_kv_proj = nn.Linear(4, 2)  # 10
    m.other = nn.Linear(2, 1)  # 3
    assert count_params(m) == 23
    assert count_params(m, exclude=()) == 33
    assert count_params(m, exclude=("teacher_kv_proj", "other")) == 20
    m.other.requires_grad_(False)
    assert count_params(m, exclude=(), trainable_only=True) == 30


def test_profile_model_on_cpu() -> None:
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    r = profile_model(m, (1, 1, 32, 32), "cpu", warmup=1, runs=3)
    assert r["params"] == 4 * 9 + 4 + 4 * 2 + 2
    assert r["macs_paper"] == 32 * 32 * (4 * 9 + 2 * 4)
    assert r["memory_method"] == "cpu_rss_peak_delta" and isinstance(r["peak_memory_bytes"], int)
    assert len(r["latency_runs_ms"]) == 3 and r["latency_ms"] > 0
    assert next(m.parameters()).device.type == "cpu"  # the model itself is not moved to meta


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="resident size is read from /proc (Linux)")
def test_rss_peak_sees_a_transient_allocation() -> None:
    """What ``peak_memory_bytes`` measures on CPU: a 64 MiB buffer that lives briefly raises the peak by about that."""
    with _RssPeak() as rss:
        buf = np.ones(64 * 2**20 // 8)  # 64 MiB, every page touched
        time.sleep(0.02)
        del buf
    assert rss.peak - rss.base >= 48 * 2**20
