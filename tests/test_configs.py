"""Every shipped config validates, and the paper configs' students have the paper's sizes (Table 7)."""
from __future__ import annotations

from pathlib import Path

import pytest

from uncol.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml")) + sorted((ROOT / "benchmarks" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_validates(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.data.spatial_dims in (2, 3)


@pytest.mark.parametrize(
    "name, params, macs",
    [("oasis2d.yaml", 3.53e6, 3.60e9), ("imagetbad3d.yaml", 13.94e6, 144.45e9)],
)
def test_paper_students_within_ten_percent(name: str, params: float, macs: float) -> None:
    from uncol.eval.efficiency import profile_student

    res = profile_student(load_config(ROOT / "configs" / "paper" / name))["student"]
    assert abs(res["params"] / params - 1) <= 0.10
    assert abs(res["macs_paper"] / macs - 1) <= 0.10
    assert res["macs_full"] > 0
