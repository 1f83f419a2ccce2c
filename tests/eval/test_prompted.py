"""Prompted evaluation (zero-shot scoring): tight boxes on rectangles give Dice 1 with the exact fake teacher; 3D via slices."""
from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from uncol.config import DataConfig
from uncol.data import import_folder
from uncol.eval.prompted import predict_case, zero_shot, zero_shot_dataset


def _dataset_2d(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        lab = np.zeros((32, 40), np.uint8)
        lab[4 + i:20, 6:30 - i] = 1
        Image.fromarray((rng.random((32, 40)) * 50 + 100 * lab).astype(np.uint8)).save(tmp_path / "img" / f"c{i}.png")
        Image.fromarray(lab).save(tmp_path / "lab" / f"c{i}_mask.png")
    return import_folder(tmp_path / "img", tmp_path / "lab", tmp_path / "ds", label_suffix="_mask")


def test_zero_shot_2d_tight_boxes(fake_teacher, tmp_path) -> None:
    spec = _dataset_2d(tmp_path)
    res = zero_shot(fake_teacher, spec, spec.case_ids, DataConfig(), jitter_px=0.0, progress=False)
    assert res["num_cases"] == 2 and res["mean"]["dice"] == 1.0 and res["jitter_px"] == 0.0
    jit = zero_shot(fake_teacher, spec, spec.case_ids, DataConfig(), jitter_px=200.0, progress=False)
    assert jit["mean"]["dice"] < 1.0  # loose boxes over-segment with this teacher


def test_zero_shot_3d_volume_as_slices(fake_teacher) -> None:
    lab = np.zeros((4, 16, 16), np.int64)
    lab[1:3, 2:9, 3:12] = 1
    lab[2, 10:14, 10:15] = 2
    image = torch.from_numpy(lab.astype(np.float32))[None]
    gen = torch.Generator().manual_seed(0)
    for axis in (0, 2):
        assert np.array_equal(predict_case(fake_teacher, image, lab, 3, 0.0, gen, slice_axis=axis), lab)


def test_command_writes_metrics_json(tmp_path, monkeypatch, fake_teacher) -> None:
    spec = _dataset_2d(tmp_path)
    before = sorted(p.relative_to(spec.root) for p in spec.root.rglob("*"))
    monkeypatch.setattr("uncol.eval.prompted.build_teacher", lambda cfg, dims: fake_teacher)
    res = zero_shot_dataset("fake", spec.root, tmp_path / "out", limit=1)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["num_cases"] == 1 == res["num_cases"] and saved["mean"]["dice"] == 1.0
    # limit=1 keeps the dataset's first case, the teacher is named, and the dataset folder is left as it was
    assert [c["case"] for c in saved["per_case"]] == spec.case_ids[:1]
    assert saved["teacher"] == fake_teacher.fingerprint() and saved["jitter_px"] == 0.0
    assert sorted(p.relative_to(spec.root) for p in spec.root.rglob("*")) == before
