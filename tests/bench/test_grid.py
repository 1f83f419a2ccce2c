"""Bench files and their expansion into cells (no training)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from uncol.bench.grid import Cell, expand, load_bench, ratio_label, ratio_tag
from uncol.errors import ConfigError

BASE = {"data": {"root": "data/x", "spatial_dims": 2, "size": [32, 32]},
        "model": {"name": "unet"}, "method": {"name": "supervised"}, "train": {"iterations": 5}}


def _bench(tmp_path: Path, **kw) -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    d = {"name": "t", "base": "base.yaml", "set": {"train.iterations": 3}, "ratios": [0.05, 0.1], "seeds": [0, 1],
         "methods": [{"label": "Zero-shot", "kind": "zero_shot", "ratios": [], "seeds": [0]},
                     {"label": "Supervised (100 %)", "method": "supervised", "ratios": [1.0]},
                     {"label": "Supervised", "method": "supervised"},
                     {"label": "MT", "method": "mean_teacher", "params": {"consistency": 0.2},
                      "set": {"train.labeled_bs": 1}}]}
    d.update(kw)
    p = tmp_path / "bench.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def test_expand_counts_keys_and_configs(tmp_path: Path) -> None:
    bench, root = load_bench(_bench(tmp_path))
    cells = expand(bench, root)
    # zero-shot: 1 cell; 100 %: 2 seeds; supervised and MT: 2 ratios x 2 seeds each
    assert len(cells) == 1 + 2 + 4 + 4
    assert len({c.key for c in cells}) == len(cells)
    zs = [c for c in cells if c.method.kind == "zero_shot"]
    assert [(c.ratio, c.seed, c.key) for c in zs] == [(None, 0, "zero_shot/any/s0")]
    mt = next(c for c in cells if c.method.id == "mt" and c.ratio == 0.1 and c.seed == 1)
    cfg = mt.cfg
    assert (cfg.method.name, cfg.method.params, cfg.train.labeled_bs) == ("mean_teacher", {"consistency": 0.2}, 1)
    assert (cfg.data.split.labeled, cfg.train.seed, cfg.train.iterations, cfg.data.root) == (0.1, 1, 3, "data/x")
    full = [c for c in cells if c.method.id == "supervised_100"]
    assert [c.cfg.data.split.labeled for c in full] == [1.0, 1.0]


def test_order_seed_first_then_method_first(tmp_path: Path) -> None:
    bench, root = load_bench(_bench(tmp_path))
    cells = expand(bench, root)
    assert [c.seed for c in cells] == sorted(c.seed for c in cells)  # seed-major (default)
    assert cells[0].method.kind == "zero_shot" and cells[1].method.id == "supervised_100"  # reference rows first
    bench, root = load_bench(_bench(tmp_path, order="method"))
    ids = [c.method.id for c in expand(bench, root)]
    assert ids == sorted(ids, key=["zero_shot", "supervised_100", "supervised", "mt"].index)


def test_only_and_seed_keys(tmp_path: Path) -> None:
    bench, root = load_bench(_bench(tmp_path, seed_keys=["train.seed", "data.split.seed"]))
    cells = expand(bench, root, only=["MT"])
    assert {c.method.id for c in cells} == {"mt"} and len(cells) == 4
    assert all(c.cfg.data.split.seed == c.seed == c.cfg.train.seed for c in cells)
    with pytest.raises(ConfigError, match="matches no method"):
        expand(bench, root, only=["nope"])


@pytest.mark.parametrize("bad, match", [
    ({"methods": [{"label": "X", "method": "no_such_method"}]}, "bench cell x/5pct/s0: unknown method"),
    ({"methods": [{"label": "X", "set": {"train.iterations": -1}}]}, "train.iterations"),
    ({"methods": [{"label": "X", "params": {"nope": 1}}]}, "method.params.nope"),
    ({"methods": [{"label": "X", "colour": "red"}]}, "methods\\[0\\].colour"),
    ({"methods": [{"label": "A b"}, {"label": "a-b"}]}, "repeat"),
    ({"methods": [{"method": "supervised"}]}, "needs a 'label'"),
    ({"methods": [{"label": "X", "kind": "magic"}]}, "kind must be"),
    ({"order": "random"}, "order"),
    ({"base": "missing.yaml"}, "not found"),
])
def test_bad_bench_files_name_the_problem(tmp_path: Path, bad: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        bench, root = load_bench(_bench(tmp_path, **bad))
        expand(bench, root)


def test_ratio_tags() -> None:
    assert [ratio_tag(r) for r in (0.05, 0.1, 1.0, 12, None)] == ["5pct", "10pct", "100pct", "n12", "any"]
    assert [ratio_label(r) for r in (0.05, 12, None)] == ["5 %", "12 labelled", "–"]


def test_shipped_bench_files_expand() -> None:
    """Every benchmarks/*.yaml parses and validates (data need not exist for that)."""
    files = sorted((Path(__file__).resolve().parents[2] / "benchmarks").glob("*.yaml"))
    assert files
    for f in files:
        bench, root = load_bench(f)
        cells = expand(bench, root)
        assert cells and all(isinstance(c, Cell) for c in cells), f


def test_bench_iterations_rescale_stage_lengths_from_the_base_file(tmp_path: Path) -> None:
    """As ``--set train.iterations`` does: stage lengths only the base file gives follow the bench's
    ``train.iterations``; stage lengths a method sets itself are kept."""
    base = {**BASE, "method": {"name": "bcp", "params": {"pretrain_iterations": 1000, "selftrain_iterations": 3000}}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    d = {"name": "t", "base": "base.yaml", "set": {"train.iterations": 40}, "ratios": [0.1], "seeds": [0],
         "methods": [{"label": "BCP", "method": "bcp"},
                     {"label": "BCP fixed", "method": "bcp", "params": {"pretrain_iterations": 10}},
                     {"label": "BCP short", "method": "bcp", "set": {"train": {"iterations": 8}}}]}
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(d))
    bench, root = load_bench(tmp_path / "bench.yaml")
    got = {c.method.label: (c.cfg.train.iterations, c.cfg.method.params) for c in expand(bench, root)}
    assert got["BCP"] == (40, {"pretrain_iterations": 10, "selftrain_iterations": 30})
    assert got["BCP fixed"] == (40, {"pretrain_iterations": 10, "selftrain_iterations": 30})
    assert got["BCP short"] == (8, {"pretrain_iterations": 2, "selftrain_iterations": 6})
