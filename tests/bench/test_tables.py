"""Tables from finished cells: known means/stds over seeds, the paper's layout, csv/json/png."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from uncol.bench.grid import expand, load_bench
from uncol.bench.tables import write_tables


def _metrics(dice: dict[str, float], hd: float = 2.0) -> dict:
    pc = {c: {"dice": d, "jaccard": d / (2 - d), "hd95": hd, "asd": hd / 2, "missed": 0} for c, d in dice.items()}
    mean = {m: sum(v[m] for v in pc.values()) / len(pc) for m in ("dice", "jaccard", "hd95", "asd")}
    return {"mean": mean, "std": {m: 0.0 for m in mean}, "per_class": pc, "missed": 0, "num_cases": 3,
            "convention": "standard", "units": "mm", "bench": {"timing": {"total_s": 10.0}}}


def _setup(tmp_path: Path) -> tuple:
    base = {"data": {"root": "x", "spatial_dims": 2, "size": [32, 32]}, "model": {"name": "unet"}}
    bench = {"name": "toy", "title": "Toy bench", "highlight": "ours", "base": base, "ratios": [0.05, 0.1], "seeds": [0, 1],
             "methods": [{"label": "Zero-shot", "kind": "zero_shot", "ratios": [], "seeds": [0]},
                         {"label": "Sup", "method": "supervised"},
                         {"label": "Ours", "method": "supervised"}]}
    p = tmp_path / "b.yaml"
    p.write_text(yaml.safe_dump(bench))
    spec, root = load_bench(p)
    return spec, expand(spec, root)


def _write(out: Path, key: str, res: dict) -> None:
    d = out / "cells" / key
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps(res))


def test_mean_std_over_seeds_and_layout(tmp_path: Path) -> None:
    spec, cells = _setup(tmp_path)
    out = tmp_path / "out"
    dice = {("sup", 0): 0.80, ("sup", 1): 0.90, ("ours", 0): 0.92, ("ours", 1): 0.94}
    for c in cells:
        if c.method.kind == "zero_shot":
            _write(out, c.key, _metrics({"a": 0.7, "b": 0.5}))
        elif c.ratio == 0.05:  # the 10 % cells are unfinished: not in the tables
            _write(out, c.key, _metrics({"a": dice[(c.method.id, c.seed)], "b": dice[(c.method.id, c.seed)] - 0.1}))
    paths = write_tables(spec, cells, out, tmp_path / "tables", {"torch": "x"})
    md = paths["md"].read_text()
    # Sup at 5 %: class a = 85.00 ± 5.00 (population std of 80, 90), class b = 75.00 ± 5.00, mean 80.00 ± 5.00
    sup = next(line for line in md.splitlines() if line.startswith("| Sup |"))
    cols = [x.strip() for x in sup.strip("|").split("|")]
    assert cols[:3] == ["Sup", "5 %", "2"]
    assert cols[3] == "85.00 ± 5.00" and cols[7] == "75.00 ± 5.00" and cols[11] == "80.00 ± 5.00"
    assert "**88.00 ± 1.00**" in md  # Ours' mean DSC is the block's best, in bold
    zs = next(line for line in md.splitlines() if line.startswith("| Zero-shot |"))
    assert "60.00 |" in zs and "±" not in zs.split("|")[4]  # one seed: no std
    assert md.count("| Zero-shot |") == 2  # reference row repeated in both ratio blocks
    assert "## 5 % labelled" in md and "## 10 % labelled" in md
    assert "a DSC %" in md and "mean DSC %" in md  # classes x metrics, then the mean
    assert "Ours: 88.00 % DSC, ahead of the best other row at this ratio, Sup (80.00 %; difference +8.00" in md
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [r["method"] for r in rows] == ["Zero-shot", "Sup", "Ours"]
    assert float(rows[1]["mean_dice_mean"]) == 0.8 and abs(float(rows[1]["a_dice_std"]) - 0.05) < 1e-9
    js = json.loads(paths["json"].read_text())
    assert js["classes"] == ["a", "b"] and len(js["cells"]) == 5 and js["environment"] == {"torch": "x"}
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_one_class_shows_only_the_mean_block(tmp_path: Path) -> None:
    spec, cells = _setup(tmp_path)
    out = tmp_path / "out"
    for c in cells[:3]:
        _write(out, c.key, _metrics({"head": 0.9}))
    md = write_tables(spec, cells, out, out)["md"].read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    assert header.split("|")[4].strip() == "DSC %" and "head" not in header


def test_no_finished_cell_still_writes_empty_tables(tmp_path: Path) -> None:
    spec, cells = _setup(tmp_path)
    paths = write_tables(spec, cells, tmp_path / "out", tmp_path / "t")
    assert paths["csv"].read_text().startswith("method,id,ratio")
    assert not paths["png"].exists()
