"""oasis2d preparer on a tiny fake neurite-oasis 2D release."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from uncol.data.prepare import oasis2d, prepare
from uncol.errors import ConfigError, DataError

# A seg24 table in the release's FreeSurfer colour-table format; the four structures sit at the
# indices of oasis2d.EXPECTED_SEG24, the other rows are filler.
NAMES = {oasis2d.EXPECTED_SEG24[1]: "Left-Thalamus", oasis2d.EXPECTED_SEG24[2]: "Right-Thalamus",
         oasis2d.EXPECTED_SEG24[3]: "Left-Hippocampus", oasis2d.EXPECTED_SEG24[4]: "Right-Hippocampus"}


def lut_text(names: dict[int, str]) -> str:
    rows = ["#No. Label Name:  R G B A", "0   Unknown  0 0 0 0"]
    rows += [f"{i}   {names.get(i, f'Other-{i}')}  10 20 30 0" for i in range(1, 25)]
    return "\n".join(rows) + "\n"


def make_release(root: Path, n: int = 10, shape=(16, 20), lut: dict[int, str] = NAMES) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    subjects = [f"OASIS_OAS1_{i:04d}_MR1" for i in range(1, n + 1)]
    (root / "subjects.txt").write_text("\n".join(subjects) + "\n")
    (root / "seg24_labels.txt").write_text(lut_text(lut))
    rng = np.random.default_rng(0)
    for i, s in enumerate(subjects):
        d = root / s
        d.mkdir()
        img = rng.random(shape + (1,)).astype(np.float32)
        seg = np.full(shape + (1,), 1, np.float32)  # float-stored integer labels, as some releases do
        for k, idx in enumerate(sorted(NAMES)):   # one 4x4 block per structure
            seg[4 * k: 4 * k + 4, 0:4, 0] = idx
        seg[0, 19, 0] = 24
        for name, arr in (("slice_norm", img), ("slice_seg24", seg), ("slice_seg4", seg)):
            nib.save(nib.Nifti1Image(arr, np.eye(4)), str(d / f"{name}.nii.gz"))
    return subjects


def test_prepare_writes_classes_sizes_and_splits(tmp_path):
    subjects = make_release(tmp_path / "raw")
    out = prepare("oasis2d", tmp_path / "raw", tmp_path / "out", seed=3)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == {"0": "background", "1": "left thalamus", "2": "right thalamus",
                              "3": "left hippocampus", "4": "right hippocampus"}
    assert meta["numTraining"] == 10 and meta["tensorImageSize"] == "2D"
    img = nib.load(str(out / "imagesTr" / f"{subjects[0]}.nii.gz"))
    lab = nib.load(str(out / "labelsTr" / f"{subjects[0]}.nii.gz"))
    assert img.shape == lab.shape == (256, 256)
    assert np.allclose(img.header.get_zooms(), (16 / 256, 20 / 256))
    values = np.asarray(lab.dataobj)
    assert set(np.unique(values)) == {0, 1, 2, 3, 4}
    # the 4x4 block of seg24 Left-Hippocampus (rows 4k..4k+3 of 16, cols 0..3 of 20) became class 3
    k = sorted(NAMES).index(oasis2d.EXPECTED_SEG24[3])
    assert values[(4 * k + 2) * 16, 10] == 3 and values[(4 * k + 2) * 16, 100] == 0
    info = json.loads((out / "prepare_info.json").read_text())
    assert info["seg24_index_of_class"] == {str(k): v for k, v in oasis2d.EXPECTED_SEG24.items()}

    trials = [json.loads((out / "splits" / f"trial_{k}.json").read_text()) for k in range(5)]
    tests = [set(t["test"]) for t in trials]
    assert set().union(*tests) == set(subjects) and sum(map(len, tests)) == 10  # disjoint folds
    for t in trials:
        assert len(t["test"]) == 2 and len(t["val"]) == 1 and len(t["train"]) == 7
        assert set(t["train"]) | set(t["val"]) | set(t["test"]) == set(subjects)
        assert "labeled" not in t and t["meta"]["seed"] == 3  # data.split.labeled draws the subset
    s5 = json.loads((out / "splits" / "trial_2_labeled_5.json").read_text())
    s10 = json.loads((out / "splits" / "trial_2_labeled_10.json").read_text())
    assert len(s5["labeled"]) == 1 and len(s10["labeled"]) == 1
    assert s5["labeled"] + s5["unlabeled"] == trials[2]["train"]


def test_same_seed_same_splits_other_seed_other_splits(tmp_path):
    make_release(tmp_path / "raw")
    a = prepare("oasis2d", tmp_path / "raw", tmp_path / "a", seed=0, size=32)
    b = prepare("oasis2d", tmp_path / "raw", tmp_path / "b", seed=0, size=32)
    c = prepare("oasis2d", tmp_path / "raw", tmp_path / "c", seed=1, size=32)
    files = sorted(p.name for p in (a / "splits").iterdir())
    assert len(files) == 15
    assert all((a / "splits" / f).read_bytes() == (b / "splits" / f).read_bytes() for f in files)
    assert any((a / "splits" / f).read_bytes() != (c / "splits" / f).read_bytes() for f in files)


def test_lut_indices_come_from_the_file(tmp_path):
    moved = {3: "Left-Thalamus-Proper", oasis2d.EXPECTED_SEG24[2]: "Right-Thalamus",
             oasis2d.EXPECTED_SEG24[3]: "Left-Hippocampus", oasis2d.EXPECTED_SEG24[4]: "Right-Hippocampus"}
    make_release(tmp_path / "raw", lut=moved)
    with pytest.warns(UserWarning, match="differ"):
        out = prepare("oasis2d", tmp_path / "raw", tmp_path / "out", size=32)
    info = json.loads((out / "prepare_info.json").read_text())
    assert info["seg24_index_of_class"]["1"] == 3


def test_missing_subject_file_and_lut_are_named(tmp_path):
    subjects = make_release(tmp_path / "raw")
    (tmp_path / "raw" / subjects[4] / "slice_seg24.nii.gz").unlink()
    with pytest.raises(DataError, match=f"{subjects[4]}/slice_seg24.nii.gz"):
        prepare("oasis2d", tmp_path / "raw", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))

    make_release(tmp_path / "raw2")
    (tmp_path / "raw2" / "seg24_labels.txt").unlink()
    with pytest.raises(DataError, match="seg24_labels.txt"):
        prepare("oasis2d", tmp_path / "raw2", tmp_path / "out")

    make_release(tmp_path / "raw3", lut={1: "Left-Thalamus"})
    with pytest.raises(DataError, match="no row for Right-Thalamus"):
        prepare("oasis2d", tmp_path / "raw3", tmp_path / "out")


def test_missing_subject_folder_needs_allow_partial(tmp_path):
    subjects = make_release(tmp_path / "raw")
    import shutil
    shutil.rmtree(tmp_path / "raw" / subjects[9])
    with pytest.raises(DataError, match=f"found 9 of 10 subject folders.*missing: {subjects[9]}"):
        prepare("oasis2d", tmp_path / "raw", tmp_path / "out")
    out = prepare("oasis2d", tmp_path / "raw", tmp_path / "out", size=32, allow_partial=True)
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == 9


def test_existing_out_unknown_option_and_bad_folder(tmp_path):
    make_release(tmp_path / "raw")
    prepare("oasis2d", tmp_path / "raw", tmp_path / "out", size=32)
    with pytest.raises(DataError, match="overwrite"):
        prepare("oasis2d", tmp_path / "raw", tmp_path / "out", size=32)
    prepare("oasis2d", tmp_path / "raw", tmp_path / "out", size=48, overwrite=True)
    assert nib.load(str(next((tmp_path / "out" / "imagesTr").iterdir()))).shape == (48, 48)
    with pytest.raises(ConfigError, match="sizes"):
        prepare("oasis2d", tmp_path / "raw", tmp_path / "o2", sizes=3)
    with pytest.raises(DataError, match="OASIS_OAS1_XXXX_MR1"):
        prepare("oasis2d", tmp_path / "out", tmp_path / "o3")
