"""A micro bench on the embedded demo data: 2 methods x 1 ratio x 2 seeds (+ a zero-shot row), 2 iterations.

Checks the files of every cell, the tables' layout, and that a second call skips every finished cell.
The zero-shot row uses a tiny box teacher (probability 1 inside the prompt box) instead of LiteMedSAM.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import uncol.teachers
from uncol.bench.run import run_bench
from uncol.cli import main
from uncol.teachers.base import Teacher, TeacherEmbedding, TeacherOutput, combine_class_probs

DEMO = Path(__file__).resolve().parents[2] / "src" / "uncol" / "assets" / "demo" / "hc18"


class BoxTeacher(Teacher):
    """Foreground probability 1 inside each class's prompt box, 0 elsewhere."""

    spatial_dims = 2
    prompt_kind = "box"

    def fingerprint(self) -> str:
        return "box"

    def encode(self, images: torch.Tensor) -> TeacherEmbedding:
        return TeacherEmbedding([], images.mean(1, keepdim=True), tuple(images.shape[2:]))

    def decode(self, emb, prompts, num_classes, out_size, outputs=("probs", "fused")) -> TeacherOutput:
        fg = torch.zeros(emb.batch_size, num_classes - 1, *out_size)
        prompted = torch.zeros(emb.batch_size, num_classes, dtype=torch.bool)
        for i, cp in enumerate(prompts):
            for c, (x0, y0, x1, y1) in cp.boxes.items():
                fg[i, c - 1, int(y0):int(y1) + 1, int(x0):int(x1) + 1] = 1.0
                prompted[i, c] = True
        return TeacherOutput(combine_class_probs(fg, prompted[:, 1:]), torch.zeros(emb.batch_size, 1, 1), (1, 1), prompted)


def _bench(tmp_path: Path) -> Path:
    bench = {
        "name": "micro", "highlight": "mt",
        "base": {"data": {"root": str(DEMO), "spatial_dims": 2, "size": [32, 32], "augment": {"enabled": False},
                          "split": {"ratios": [0.6, 0.2, 0.2], "seed": 0}},
                 "model": {"name": "unet", "params": {"feature_chns": [4, 8, 8, 16, 16]}},
                 "train": {"iterations": 2, "batch_size": 2, "labeled_bs": 2, "unlabeled_bs": 2, "val_every": 2,
                           "save_every": 2, "log_every": 1, "threads": 1, "device": "cpu"},
                 "eval": {"max_val_cases": 1}},
        "ratios": [0.1], "seeds": [0, 1],
        "methods": [{"label": "Box teacher", "id": "zs", "kind": "zero_shot", "teacher": "box", "ratios": [], "seeds": [0]},
                    {"label": "Supervised", "method": "supervised"},
                    {"label": "MT", "id": "mt", "method": "mean_teacher"}]}
    p = tmp_path / "micro.yaml"
    p.write_text(yaml.safe_dump(bench))
    return p


@pytest.fixture
def box_teacher(monkeypatch: pytest.MonkeyPatch) -> None:
    real = uncol.teachers.build_teacher
    monkeypatch.setattr(uncol.teachers, "build_teacher",
                        lambda cfg, *a, **k: BoxTeacher().freeze() if cfg.name == "box" else real(cfg, *a, **k))


def test_micro_bench_runs_resumes_and_tabulates(tmp_path: Path, box_teacher: None,
                                                capsys: pytest.CaptureFixture) -> None:
    bench, out, tables = _bench(tmp_path), tmp_path / "out", tmp_path / "tables"
    res = run_bench(bench, out, tables_dir=tables, progress=False)
    assert res["ran"] == ["zs/any/s0", "supervised/10pct/s0", "mt/10pct/s0", "supervised/10pct/s1", "mt/10pct/s1"]
    for key in res["ran"][1:]:
        d = out / "cells" / key
        assert {"config.yaml", "split.json", "log.jsonl", "best.pt", "final.pt", "metrics.json"} <= {p.name for p in d.iterdir()}
        assert not (d / "last.pt").exists()  # the resume state is dropped once the cell is finished
        m = json.loads((d / "metrics.json").read_text())
        assert m["bench"]["seed"] == int(key[-1]) and m["bench"]["ratio"] == 0.1 and m["num_cases"] > 0
        assert m["bench"]["timing"]["total_s"] >= m["bench"]["timing"]["train_s"] >= 0
    saved = yaml.safe_load((out / "cells/supervised/10pct/s1/config.yaml").read_text())
    assert saved["train"]["seed"] == 1 and saved["data"]["split"]["labeled"] == 0.1
    zs = json.loads((out / "cells/zs/any/s0/metrics.json").read_text())
    assert 0.6 < zs["mean"]["dice"] < 0.95  # a filled ellipse in its bounding box: ~pi/4 of it is head
    assert (out / "environment.json").is_file() and (out / "bench.yaml").is_file()
    md = (tables / "results.md").read_text()
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    assert [line.split("|")[1].strip() for line in lines] == ["Method", "Box teacher", "Supervised", "MT"]
    assert all(line.split("|")[3].strip() == "2" for line in lines[2:])  # n = 2 seeds
    assert {p.name for p in tables.iterdir()} == {"results.csv", "results.json", "results.md", "results_dice.png"}

    # the second call skips every finished cell (through the CLI), and --dry-run says so
    before = (out / "cells/mt/10pct/s0/metrics.json").stat().st_mtime_ns
    assert main(["bench", str(bench), "--out", str(out), "--tables", str(tables), "--no-progress"]) == 0
    assert (out / "cells/mt/10pct/s0/metrics.json").stat().st_mtime_ns == before
    assert capsys.readouterr().out.count("done, skipped") == 5
    assert main(["bench", str(bench), "--out", str(out), "--dry-run", "--only", "MT"]) == 0
    listing = capsys.readouterr().out
    assert listing.count("[done]") == 2 and "Supervised" not in listing


def test_an_interrupted_cell_is_finished_without_retraining(tmp_path: Path, box_teacher: None) -> None:
    bench, out = _bench(tmp_path), tmp_path / "out"
    run_bench(bench, out, only=["Supervised"], progress=False)
    d = out / "cells/supervised/10pct/s0"
    (d / "metrics.json").unlink()  # trained, not yet evaluated
    log_before = (d / "log.jsonl").read_text()
    res = run_bench(bench, out, only=["Supervised"], progress=False)
    assert res["ran"] == ["supervised/10pct/s0"] and (d / "metrics.json").is_file()
    assert (d / "log.jsonl").read_text() == log_before  # evaluated again, not retrained


def test_bad_bench_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    p = tmp_path / "b.yaml"
    p.write_text("name: x\nmethods: []\n")
    assert main(["bench", str(p), "--out", str(tmp_path / "o")]) == 2
    assert "methods" in capsys.readouterr().err


def test_a_failing_cell_is_recorded_and_the_bench_goes_on(tmp_path: Path, box_teacher: None,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture) -> None:
    import uncol.bench.run as br

    real = br.run_cell

    def flaky(cell, out, progress=True):  # the MT cell of seed 0 breaks, every other cell runs
        if cell.key == "mt/10pct/s0":
            raise RuntimeError("element 0 of tensors does not require grad")
        return real(cell, out, progress=progress)

    monkeypatch.setattr(br, "run_cell", flaky)
    bench, out = _bench(tmp_path), tmp_path / "out"
    assert main(["bench", str(bench), "--out", str(out), "--no-progress", "--only", "mt", "--only", "Supervised"]) == 1
    text = capsys.readouterr().out
    assert "mt/10pct/s0: FAILED (RuntimeError: element 0 of tensors" in text
    assert "failed cells: mt/10pct/s0" in text
    assert "does not require grad" in (out / "cells/mt/10pct/s0/error.txt").read_text()
    done = {p.parent.relative_to(out / "cells").as_posix() for p in (out / "cells").glob("*/*/*/metrics.json")}
    assert done == {"supervised/10pct/s0", "supervised/10pct/s1", "mt/10pct/s1"}
    monkeypatch.setattr(br, "run_cell", real)  # the retry succeeds and clears the error file
    res = run_bench(bench, out, only=["mt"], progress=False)
    assert res["ran"] == ["mt/10pct/s0"] and res["failed"] == []
    assert not (out / "cells/mt/10pct/s0/error.txt").exists()


def test_cell_patterns_split_a_grid_between_processes(tmp_path: Path, box_teacher: None,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    import uncol.bench.run as br

    calls: list[str] = []
    real = br.run_cell
    monkeypatch.setattr(br, "run_cell", lambda cell, out, progress=True: calls.append(cell.key) or real(cell, out, progress))
    bench, out = _bench(tmp_path), tmp_path / "out"
    res = run_bench(bench, out, progress=False, cell_globs=["mt/*/s1", "supervised/10pct/s0"])
    assert calls == res["ran"] == ["supervised/10pct/s0", "mt/10pct/s1"]  # grid order, nothing else
    assert main(["bench", str(bench), "--out", str(out), "--cell", "urpc/*"]) == 2
    assert "--cell urpc/* matches no cell" in capsys.readouterr().err
