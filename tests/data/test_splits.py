"""uncol.data.splits: determinism, disjointness, group_by, labelled subset, save/load."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from uncol.config import SplitConfig
from uncol.data.splits import Split, make_split
from uncol.errors import DataError

IDS = [f"case_{i:03d}" for i in range(50)]


def test_deterministic_disjoint_and_complete() -> None:
    cfg = SplitConfig(ratios=(0.7, 0.1, 0.2), seed=3, labeled=0.2)
    a, b = make_split(IDS, cfg), make_split(list(reversed(IDS)), cfg)
    assert (a.train, a.val, a.test, a.labeled) == (b.train, b.val, b.test, b.labeled)
    assert (len(a.train), len(a.val), len(a.test)) == (35, 5, 10)
    assert sorted(a.train + a.val + a.test) == IDS
    assert len(a.labeled) == 7 and sorted(a.labeled + a.unlabeled) == sorted(a.train)
    assert not set(a.labeled) & set(a.unlabeled)
    c = make_split(IDS, SplitConfig(seed=4, labeled=0.2))
    assert c.test != a.test


def test_labeled_count_and_too_small_ratio() -> None:
    s = make_split(IDS, SplitConfig(labeled=3))
    assert len(s.labeled) == 3
    with pytest.raises(DataError, match=r"leaves 0 of 35 training cases labelled; use at least 0\.02857"):
        make_split(IDS, SplitConfig(labeled=0.01))
    with pytest.raises(DataError, match="more labelled cases"):
        make_split(IDS, SplitConfig(labeled=36))


def test_group_by_keeps_subjects_together() -> None:
    ids = [f"{s:03d}_HC" for s in range(30)] + [f"{s:03d}_2HC" for s in range(0, 30, 2)] + ["004_3HC"]
    s = make_split(ids, SplitConfig(group_by=r"^(\d+)_", seed=1))
    part = {c: k for k in ("train", "val", "test") for c in getattr(s, k)}
    for c in ids:
        subject = c.split("_")[0]
        assert len({part[d] for d in ids if d.startswith(subject + "_")}) == 1
    assert len({c.split("_")[0] for c in s.test}) == 6  # 20 % of 30 subjects
    with pytest.raises(DataError, match="does not match case 'x'"):
        make_split(ids + ["x"], SplitConfig(group_by=r"^(\d+)_"))


def test_tiny_dataset_errors() -> None:
    with pytest.raises(DataError, match="leaves no training cases"):
        make_split(["a", "b"], SplitConfig(labeled=1))
    s = make_split(["a", "b", "c"], SplitConfig(labeled=1))
    assert (len(s.train), len(s.val), len(s.test)) == (1, 1, 1)


def test_save_load_round_trip_and_reuse(tmp_path: Path) -> None:
    s = make_split(IDS, SplitConfig(seed=2))
    s.save(tmp_path / "split.json")
    t = Split.load(tmp_path / "split.json")
    assert t == s
    r = make_split(IDS, SplitConfig(seed=99, file=str(tmp_path / "split.json")))
    assert r.train == s.train and r.labeled == s.labeled
    with pytest.raises(DataError, match="names case 'case_049'"):
        make_split(IDS[:49], SplitConfig(file=str(tmp_path / "split.json")))


def test_hand_written_case_lists(tmp_path: Path) -> None:
    path = tmp_path / "lists.json"
    path.write_text(json.dumps({"train": IDS[:10], "val": IDS[10:12], "test": IDS[12:]}))
    s = make_split(IDS, SplitConfig(labeled=4, file=str(path)))
    assert s.train == IDS[:10] and len(s.labeled) == 4 and set(s.labeled) <= set(IDS[:10])
    assert make_split(IDS, SplitConfig(labeled=4, file=str(path))).labeled == s.labeled
    path.write_text(json.dumps({"train": IDS[:10], "val": IDS[5:12]}))
    with pytest.raises(DataError, match="in both 'train' and 'val'"):
        Split.load(path, labeled=0.5)
    path.write_text(json.dumps({"train": "abc"}))
    with pytest.raises(DataError, match="lists.json: key 'train'"):
        Split.load(path, labeled=0.5)
