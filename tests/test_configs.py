"""Every shipped config validates, and the paper configs' students have the paper's sizes (Table 7)."""
from __future__ import annotations

from pathlib import Path

import pytest

from uncol.config import Config, from_dict, load_config, to_dict
from uncol.engine.setup import check_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml")) + sorted((ROOT / "benchmarks" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_validates(path: Path) -> None:
    """Types, component params, stride and teacher checks pass; the saved form reloads to the same config."""
    cfg = load_config(path)
    check_config(cfg, check_device=False)  # a GPU config checked on this machine
    assert from_dict(Config, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "name, params, macs",
    [("oasis2d.yaml", 3.53e6, 3.60e9), ("imagetbad3d.yaml", 13.94e6, 144.45e9)],
)
def test_paper_students_within_ten_percent(name: str, params: float, macs: float) -> None:
    from uncol.eval.profile import profile_student

    res = profile_student(load_config(ROOT / "configs" / "paper" / name))["student"]
    assert abs(res["params"] / params - 1) <= 0.10
    assert abs(res["macs_paper"] / macs - 1) <= 0.10
    assert res["macs_full"] > 0
