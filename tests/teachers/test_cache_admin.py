"""uncol cache list / clear: sizes per teacher configuration and per dataset; clearing only what was asked."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from uncol.config import Config, from_dict
from uncol.errors import DataError
from uncol.teachers.base import TeacherEmbedding
from uncol.teachers.cache import FeatureCache
from uncol.teachers.cache_admin import clear_cache, dataset_keys, human_bytes, list_cache


def _emb() -> TeacherEmbedding:
    return TeacherEmbedding([torch.ones(1, 4, 8, 8)], torch.ones(1, 8, 4, 4), (16, 16))


def _dataset(root: Path) -> Path:
    (root / "im").mkdir(parents=True)
    training = []
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (12, 20), dtype=np.uint8)).save(root / "im" / f"c{i}.png")
        Image.fromarray(np.zeros((12, 20), np.uint8)).save(root / "im" / f"c{i}_m.png")
        training.append({"image": f"im/c{i}.png", "label": f"im/c{i}_m.png"})
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "bg", "1": "fg"}, "training": training}))
    return root


def test_list_and_clear_per_teacher_and_dataset(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cfg = from_dict(Config, {"data": {"root": str(_dataset(tmp_path / "ds")), "size": [16, 16]}})
    keys = sorted(dataset_keys(cfg))
    assert len(keys) == 3 and all(len(k) == 64 for k in keys)
    assert dataset_keys(cfg) == set(keys)  # deterministic: the un-augmented images
    a = FeatureCache(root, "LiteMedSAMTeacher", "litemedsam|sha=abc|size=16")
    b = FeatureCache(root, "OtherTeacher", "other|x")
    for k in keys[:2] + ["f" * 64]:
        a.save(k, _emb())
    b.save(keys[0], _emb())
    one = a.path(keys[0]).stat().st_size
    listing = {f.teacher: f for f in list_cache(root, {"ds": set(keys)})}
    assert listing["LiteMedSAMTeacher"].files == 3 and listing["LiteMedSAMTeacher"].bytes == 3 * one
    assert listing["LiteMedSAMTeacher"].datasets == {"ds": (2, 2 * one)}
    assert listing["LiteMedSAMTeacher"].fingerprint == "litemedsam|sha=abc|size=16"
    assert listing["OtherTeacher"].datasets == {"ds": (1, one)}
    assert clear_cache(root, keys=keys, dry_run=True) == (3, 3 * one) and a.path(keys[0]).is_file()
    assert clear_cache(root, teacher="LiteMedSAMTeacher", keys=keys) == (2, 2 * one)
    assert not a.path(keys[0]).exists() and a.path("f" * 64).is_file() and b.path(keys[0]).is_file()
    with pytest.raises(DataError, match="no cache of teacher 'Nope'; present: LiteMedSAMTeacher, OtherTeacher"):
        clear_cache(root, teacher="Nope")
    assert clear_cache(root) == (2, 2 * one)
    assert list_cache(root) == [] and list(root.iterdir()) == []


def test_cli_list_and_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from uncol.cli import main

    ds = _dataset(tmp_path / "ds")
    (tmp_path / "c.yaml").write_text(f"data: {{root: {ds}, size: [16, 16]}}\n")
    root = tmp_path / "cache"
    cfg = from_dict(Config, {"data": {"root": str(ds), "size": [16, 16]}})
    cache = FeatureCache(root, "LiteMedSAMTeacher", "fp")
    for k in dataset_keys(cfg):
        cache.save(k, _emb())
    assert main(["cache", "list", "--dir", str(root), "--config", str(tmp_path / "c.yaml")]) == 0
    out = capsys.readouterr().out
    assert "LiteMedSAMTeacher, 3 images" in out and "dataset ds: 3 of its 3 images cached" in out
    assert main(["cache", "clear", "--dir", str(root)]) == 2  # says what to clear
    assert main(["cache", "clear", "--dir", str(root), "--all"]) == 0
    assert "deleted 3 cache files" in capsys.readouterr().out and not any(root.iterdir())


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (512, 1536, 10 * 2**20)] == ["512 B", "1.5 KiB", "10.0 MiB"]
