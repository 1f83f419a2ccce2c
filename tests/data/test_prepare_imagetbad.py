"""imagetbad preparer on tiny fake ImageTBAD cases (<n>_image.nii.gz / <n>_label.nii.gz)."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from uncol.data.prepare import prepare
from uncol.errors import ConfigError, DataError

SHAPE = (20, 20, 8)
SPACING = (0.8, 0.8, 2.0)  # -> 16 x 16 x 16 at 1 mm


def make_release(root: Path, n: int = 10) -> None:
    (root / "imageTBAD").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, n + 1):
        img = rng.uniform(-1000, 1500, SHAPE).astype(np.float32)
        lab = np.zeros(SHAPE, np.uint8)
        lab[2:8, 2:8, 2:6] = 1      # true lumen
        lab[10:16, 10:16, 2:6] = 2  # false lumen
        lab[10:16, 10:13, 2:6] = 3  # thrombus inside it
        aff = np.diag(SPACING + (1.0,))
        nib.save(nib.Nifti1Image(img, aff), str(root / "imageTBAD" / f"{i}_image.nii.gz"))
        nib.save(nib.Nifti1Image(lab, aff), str(root / "imageTBAD" / f"{i}_label.nii.gz"))
    (root / "imageTBAD" / "._1_image.nii.gz").write_bytes(b"macOS junk")


def load(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


def test_prepare_classes_cube_and_splits(tmp_path):
    make_release(tmp_path / "raw")
    out = prepare("imagetbad", tmp_path / "raw", tmp_path / "out", allow_partial=True, size=12)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == {"0": "background", "1": "true lumen", "2": "false lumen"}
    assert meta["numTraining"] == 10 and meta["training"][0]["image"] == "./imagesTr/tbad_001.nii.gz"
    img = nib.load(str(out / "imagesTr" / "tbad_001.nii.gz"))
    assert img.shape == (12, 12, 12) and np.allclose(img.header.get_zooms(), 16 / 12)
    data = np.asarray(img.dataobj)
    assert data.min() >= 0 and data.max() <= 1
    lab = load(out / "labelsTr" / "tbad_001.nii.gz")
    assert set(np.unique(lab)) == {0, 1, 2}
    info = json.loads((out / "prepare_info.json").read_text())
    assert info["cases"]["tbad_001"]["raw_shape"] == list(SHAPE) and info["thrombus_mapped_to"] == 0
    trials = [json.loads((out / "splits" / f"trial_{k}.json").read_text()) for k in range(5)]
    assert [len(t["test"]) for t in trials] == [2] * 5 and all(len(t["train"]) == 7 for t in trials)
    assert set().union(*(set(t["test"]) for t in trials)) == set(meta_ids(meta))
    for pct in (10, 20):
        s = json.loads((out / "splits" / f"trial_0_labeled_{pct}.json").read_text())
        assert len(s["labeled"]) == 1 and len(s["unlabeled"]) == 6


def meta_ids(meta: dict) -> list[str]:
    return [Path(e["image"]).name[:-7] for e in meta["training"]]


def test_thrombus_folding_options(tmp_path):
    make_release(tmp_path / "raw", n=10)
    bg = prepare("imagetbad", tmp_path / "raw", tmp_path / "bg", allow_partial=True, size=16)
    fl = prepare("imagetbad", tmp_path / "raw", tmp_path / "fl", allow_partial=True, size=16,
                 thrombus="false_lumen")
    a, b = load(bg / "labelsTr" / "tbad_002.nii.gz"), load(fl / "labelsTr" / "tbad_002.nii.gz")
    assert (b == 2).sum() > (a == 2).sum() > 0 and (a == 1).sum() == (b == 1).sum()
    with pytest.raises(ConfigError, match="thrombus"):
        prepare("imagetbad", tmp_path / "raw", tmp_path / "x", thrombus="keep")


def test_seed_reproducible(tmp_path):
    make_release(tmp_path / "raw")
    a = prepare("imagetbad", tmp_path / "raw", tmp_path / "a", allow_partial=True, size=8, seed=5)
    b = prepare("imagetbad", tmp_path / "raw", tmp_path / "b", allow_partial=True, size=8, seed=5)
    c = prepare("imagetbad", tmp_path / "raw", tmp_path / "c", allow_partial=True, size=8, seed=6)
    read = lambda d: [(d / "splits" / f"trial_{k}.json").read_text() for k in range(5)]
    assert read(a) == read(b) and read(a) != read(c)


def test_count_pairs_and_values_are_checked(tmp_path):
    make_release(tmp_path / "raw", n=3)
    with pytest.raises(DataError, match="found 3 of 100 ImageTBAD cases"):
        prepare("imagetbad", tmp_path / "raw", tmp_path / "out")
    (tmp_path / "raw" / "imageTBAD" / "2_label.nii.gz").unlink()
    with pytest.raises(DataError, match="missing: 2_label.nii.gz"):
        prepare("imagetbad", tmp_path / "raw", tmp_path / "out", allow_partial=True)
    make_release(tmp_path / "raw2", n=6)
    bad = np.zeros(SHAPE, np.uint8)
    bad[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(bad, np.eye(4)), str(tmp_path / "raw2" / "imageTBAD" / "4_label.nii.gz"))
    with pytest.raises(DataError, match=r"4_label.nii.gz has label values \[7\]"):
        prepare("imagetbad", tmp_path / "raw2", tmp_path / "out", allow_partial=True, size=8)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
