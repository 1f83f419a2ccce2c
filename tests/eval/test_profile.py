"""``uncol profile`` / profile_student and the Table-7-like profile_table."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from torch import nn

from uncol.config import Config, DataConfig, ModelConfig, load_config
from uncol.errors import ConfigError
from uncol.eval.efficiency import count_macs, count_params
from uncol.eval.profile import (
    default_profile_entries,
    format_profile_table,
    latency_ratios,
    profile_student,
    profile_table,
)
from uncol.models import build_model

DEMO = Path(__file__).resolve().parents[2] / "src" / "uncol" / "assets" / "demo" / "hc18"


def test_profile_student_contract_and_counts() -> None:
    cfg = Config(data=DataConfig(root=str(DEMO), spatial_dims=2, size=(64, 48)), model=ModelConfig(name="unet"))
    res = profile_student(cfg)
    ref = build_model(cfg.model, spatial_dims=2, num_classes=2)
    macs = count_macs(ref, (1, 1, 64, 48))
    assert res["student"] == {"name": "unet", "params": count_params(ref), **macs}
    assert res["input_shape"] == [1, 1, 64, 48] and res["num_classes"] == 2
    assert res["num_classes_source"].endswith("dataset.json")
    big = profile_student(cfg, size=(128, 96))
    assert big["student"]["macs_paper"] == pytest.approx(4 * res["student"]["macs_paper"], rel=1e-6)
    with pytest.raises(ConfigError, match="spatial_dims"):
        profile_student(cfg, size=(8, 8, 8))


def test_profile_student_without_data_defaults_to_two_classes() -> None:
    cfg = Config(data=DataConfig(root="/nonexistent/data", spatial_dims=3, size=(16, 16, 16)),
                 model=ModelConfig(name="vnet"))
    res = profile_student(cfg)
    assert res["num_classes"] == 2 and res["num_classes_source"].startswith("default")
    assert res["student"]["macs_paper"] > res["student"]["macs_exact"]  # transposed convs: thop convention


def test_profile_cli_writes_json(tmp_path: Path) -> None:
    from uncol.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {{root: {DEMO}, spatial_dims: 2, size: [32, 32]}}\nmodel: {{name: unet}}\n")
    out = tmp_path / "profile.json"
    assert main(["profile", str(cfg), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["student"]) >= {"params", "macs_paper", "macs_full"}
    assert main(["profile", str(cfg), "--size", "8", "8", "8"]) == 2  # wrong number of axes: exit 2


@pytest.mark.slow
def test_profile_latency_times_student_and_teacher(tmp_path: Path, litemedsam, monkeypatch) -> None:
    """Issue 15: ``--latency`` adds the student's and the teacher's latency and peak memory to the JSON."""
    from uncol.cli import main
    from uncol.teachers.litemedsam import LiteMedSAMTeacher

    monkeypatch.setattr(LiteMedSAMTeacher, "build", classmethod(lambda cls, *a: litemedsam))  # built once per session
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {{root: {DEMO}, spatial_dims: 2, size: [32, 32]}}\nmodel: {{name: unet}}\n"
                   "teacher: {name: litemedsam}\n")
    out = tmp_path / "profile.json"
    assert main(["profile", str(cfg), "--latency", "--warmup", "0", "--runs", "1", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    for part in ("student", "teacher"):
        assert res[part]["latency_ms"] > 0 and len(res[part]["latency_runs_ms"]) == 1
        assert "peak_memory_mb" in res[part] and res[part]["device"] == "cpu"
    assert res["teacher"]["weights"] == "checkpoint" and res["teacher"]["input_shape"] == [1, 1, 32, 32]
    assert "latency_ms" not in json.loads(json.dumps(profile_student(load_config(cfg))))["student"]
    assert main(["profile", str(cfg), "--latency", "--runs", "0"]) == 2


def test_profile_table_rows_and_ratios() -> None:
    small = [("2D", "tiny conv", lambda: nn.Conv2d(1, 4, 3, padding=1), (1, 1, 16, 16)),
             ("2D", "big conv", lambda: nn.Conv2d(1, 64, 3, padding=1), (1, 1, 64, 64))]
    md, rows = profile_table(small, warmup=1, runs=3, runs_for={"big conv": 2})
    assert [r["runs"] for r in rows] == [3, 2] and len(rows[1]["latency_runs_ms"]) == 2
    assert rows[0]["macs_paper"] == 16 * 16 * 4 * 9 and rows[0]["params"] == 4 * 9 + 4
    lines = md.splitlines()
    assert lines[0].startswith("| Dim. | Model | Params (M)") and len(lines) == 4
    assert "| 2D | tiny conv | 0.00 |" in md
    r = latency_ratios(rows, "tiny conv", ["big conv", "absent"])
    assert set(r) == {"big conv"} and r["big conv"] == pytest.approx(rows[0]["latency_ms"] / rows[1]["latency_ms"])
    md2, _ = profile_table(small, latency=False)
    assert "| – | – | 0 |" in md2 and md2 == format_profile_table(_)


def test_teacher_rows_match_the_paper_sizes() -> None:
    """MedSAM ViT-B (SAM ViT-B) at 1024²: 93.74 M parameters, 371.46 GMACs in the paper's Table 7."""
    entries = {label: (build, shape) for _, label, build, shape in default_profile_entries()}
    build, shape = entries["MedSAM ViT-B (teacher) 1024²"]
    model = build()
    assert count_params(model) / 1e6 == pytest.approx(93.74, abs=0.01)
    assert count_macs(model, shape)["macs_paper"] / 1e9 == pytest.approx(371.46, rel=0.01)
    student = replace(Config(), data=DataConfig(root="", spatial_dims=2, size=(256, 256)),
                      model=ModelConfig(name="uncol_student"))
    assert profile_student(student, num_classes=5)["student"]["params"] / 1e6 == pytest.approx(3.53, rel=0.02)
