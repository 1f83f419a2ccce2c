"""msd preparer: check an MSD task folder as distributed and link it into OUT."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from uncol.data.prepare import prepare
from uncol.errors import DataError


def make_task(root: Path, n: int = 10, labels=None) -> Path:
    task = root / "Task04_Hippocampus"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (task / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    training = []
    for i in range(1, n + 1):
        name = f"hippocampus_{i:03d}.nii.gz"
        lab = rng.integers(0, 3, (6, 7, 5)).astype(np.uint8)
        nib.save(nib.Nifti1Image(rng.random((6, 7, 5)).astype(np.float32), np.eye(4)), str(task / "imagesTr" / name))
        nib.save(nib.Nifti1Image(lab, np.eye(4)), str(task / "labelsTr" / name))
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    (task / "imagesTr" / "._hippocampus_001.nii.gz").write_bytes(b"macOS resource fork")
    meta = {"name": "Hippocampus", "labels": labels or {"0": "background", "1": "Anterior", "2": "Posterior"},
            "numTraining": n, "numTest": 0, "training": training, "test": []}
    (task / "dataset.json").write_text(json.dumps(meta))
    return task


def test_checked_task_is_linked_with_splits(tmp_path):
    task = make_task(tmp_path / "raw")
    out = prepare("msd", tmp_path / "raw", tmp_path / "out", seed=2)
    assert (out / "imagesTr").is_symlink() and (out / "imagesTr").resolve() == (task / "imagesTr").resolve()
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == 10
    t0 = json.loads((out / "splits" / "trial_0.json").read_text())
    assert (len(t0["train"]), len(t0["val"]), len(t0["test"])) == (7, 1, 2)
    assert set(t0["train"] + t0["val"] + t0["test"]) == {f"hippocampus_{i:03d}" for i in range(1, 11)}
    assert json.loads((out / "prepare_info.json").read_text())["checked"] is True
    from uncol.data.splits import Split  # the split files are what Split.load reads

    drawn = Split.load(out / "splits" / "trial_0.json", labeled=0.3)
    fixed = Split.load(out / "splits" / "trial_0_labeled_20.json")
    assert drawn.train == fixed.train and len(drawn.labeled) == 2 and fixed.labeled == fixed.train[:1]
    again = prepare("msd", tmp_path / "raw", tmp_path / "again", seed=2)
    assert (again / "splits" / "trial_3.json").read_text() == (out / "splits" / "trial_3.json").read_text()


def test_copy_mode_skips_macos_files(tmp_path):
    make_task(tmp_path / "raw")
    out = prepare("msd", tmp_path / "raw" / "Task04_Hippocampus", tmp_path / "out", link="copy")
    assert not (out / "imagesTr").is_symlink() and len(list((out / "imagesTr").iterdir())) == 10


@pytest.mark.parametrize("breakage, message", [
    ("missing_label", r"1 file\(s\) listed in .*dataset.json are missing: ./labelsTr/hippocampus_004.nii.gz"),
    ("shape", "hippocampus_002.nii.gz has shape"),
    ("value", r"hippocampus_003.nii.gz has label values \[2\]"),
    ("count", "numTraining is 11 but 'training' lists 10"),
    ("no_json", "no MSD dataset.json in .*Task04_Hippocampus; pass the task folder"),
])
def test_problems_are_named(tmp_path, breakage, message):
    labels = {"0": "background", "1": "Anterior"} if breakage == "value" else None
    task = make_task(tmp_path / "raw", labels=labels)
    meta = json.loads((task / "dataset.json").read_text())
    if breakage == "missing_label":
        (task / "labelsTr" / "hippocampus_004.nii.gz").unlink()
    elif breakage == "shape":
        nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.uint8), np.eye(4)), str(task / "labelsTr" / "hippocampus_002.nii.gz"))
    elif breakage == "value":
        for i in (1, 2):  # make the first two cases valid so the third is the one named
            name = f"hippocampus_{i:03d}.nii.gz"
            nib.save(nib.Nifti1Image(np.ones((6, 7, 5), np.uint8), np.eye(4)), str(task / "labelsTr" / name))
    elif breakage == "count":
        meta["numTraining"] = 11
        (task / "dataset.json").write_text(json.dumps(meta))
    elif breakage == "no_json":
        (task / "dataset.json").unlink()
    with pytest.raises(DataError, match=message):
        prepare("msd", task, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_out_must_differ_from_raw(tmp_path):
    task = make_task(tmp_path / "raw")
    with pytest.raises(DataError, match="RAW is never written"):
        prepare("msd", task, task)


def test_real_task04_subset_passes_the_checks(shared_data, tmp_path):
    out = prepare("msd", shared_data / "msd_task04_hippocampus", tmp_path / "hippo")
    t = json.loads((out / "splits" / "trial_0_labeled_10.json").read_text())
    assert (len(t["train"]), len(t["val"]), len(t["test"]), len(t["labeled"])) == (140, 20, 40, 14)
