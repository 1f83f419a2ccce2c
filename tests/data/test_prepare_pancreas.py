"""pancreas-ct preparer on tiny fake NIH Pancreas-CT cases (MC-Net layout) and its pieces."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from uncol.data.prepare import pancreas_ct, prepare
from uncol.data.prepare.common import resized_affine
from uncol.errors import DataError

SPACING = (2.0, 2.0, 2.5)


def write_case(root: Path, n: int, shape=(12, 12, 4), label_value: int = 1, image_name: str = "image") -> None:
    rng = np.random.default_rng(n)
    img = rng.uniform(-300, 400, shape).astype(np.float32)
    lab = np.zeros(shape, np.uint8)
    lab[4:7, 5:8, 1:3] = label_value
    aff = np.diag(SPACING + (1.0,))
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "TCIA_pancreas_labels-02-05-2017").mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(img, aff), str(root / "images" / f"{image_name}{n:04d}.nii.gz"))
    nib.save(nib.Nifti1Image(lab, aff), str(root / "TCIA_pancreas_labels-02-05-2017" / f"label{n:04d}.nii.gz"))


def test_case_lists_are_mc_net_62_20():
    assert len(pancreas_ct.TRAIN) == 62 and len(pancreas_ct.TEST) == 20
    assert sorted(pancreas_ct.TRAIN + pancreas_ct.TEST) == list(range(1, 83))


def test_full_release_split_labels_and_sizes(tmp_path):
    for n in range(1, 83):
        write_case(tmp_path / "raw", n, image_name="PANCREAS_" if n % 2 else "image")
    out = prepare("pancreas-ct", tmp_path / "raw", tmp_path / "out")
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == {"0": "background", "1": "pancreas"} and meta["numTraining"] == 82
    split = json.loads((out / "splits" / "trial_0.json").read_text())
    assert split["train"][:3] == ["pancreas_0057", "pancreas_0018", "pancreas_0062"]
    assert len(split["train"]) == 62 and len(split["test"]) == 20 and split["val"] == []
    for pct, n in ((10, 6), (20, 12)):
        s = json.loads((out / "splits" / f"trial_0_labeled_{pct}.json").read_text())
        assert s["labeled"] == split["train"][:n] and s["unlabeled"] == split["train"][n:]
    img = nib.load(str(out / "imagesTr" / "pancreas_0001.nii.gz"))
    lab = np.asarray(nib.load(str(out / "labelsTr" / "pancreas_0001.nii.gz")).dataobj)
    # 12 x 12 x 4 voxels of 2 x 2 x 2.5 mm -> 24 x 24 x 10 at 1 mm; the 96-voxel crop keeps all of x/y
    assert img.shape == lab.shape == (24, 24, 10)
    assert np.allclose(img.header.get_zooms(), (1, 1, 1))
    data = np.asarray(img.dataobj)
    assert abs(data.mean()) < 1e-4 and abs(data.std() - 1) < 1e-3
    assert set(np.unique(lab)) == {0, 1} and lab.sum() == 6 * 6 * 5
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_crop_is_mc_net_crop_roi():
    label = np.zeros((300, 250, 5), np.uint8)
    label[100:111, 40:200, 2] = 1  # x extent 10 (< 96), y extent 159
    sx, sy = pancreas_ct.crop_xy(label)
    assert (sx.start, sx.stop) == (100 - 43 - 25, 110 + 43 + 25)
    assert (sy.start, sy.stop) == (40 - 25, min(199 + 25, 250))


def test_preprocess_window_and_geometry():
    img = np.zeros((40, 40, 6), np.float32)
    img[:20] = -1000.0
    img[20:] = 1000.0
    lab = np.zeros(img.shape, np.uint8)
    lab[18:22, 18:22, 2:4] = 1
    aff = np.array([[1.5, 0, 0, -10], [0, 1.5, 0, 5], [0, 0, 3.0, 7], [0, 0, 0, 1]])
    out, olab, oaff = pancreas_ct.preprocess(img, lab, aff, image_order=1)
    assert out.shape == (60, 60, 18) and olab.sum() > 0
    assert len(np.unique(np.round(out, 4))) == 2  # both HU extremes clipped to the window ends
    # the world position of the label's centre is kept by resampling and cropping
    centre_in = aff @ np.r_[np.argwhere(lab).mean(0), 1]
    centre_out = oaff @ np.r_[np.argwhere(olab).mean(0), 1]
    assert np.allclose(centre_in, centre_out, atol=0.5)


def test_resized_affine_keeps_the_field_of_view():
    aff = np.diag([0.7, 0.7, 2.0, 1.0])
    new = resized_affine(aff, (100, 100, 10), (70, 70, 20))
    first_corner = aff @ np.array([-0.5, -0.5, -0.5, 1])
    assert np.allclose(new @ np.array([-0.5, -0.5, -0.5, 1]), first_corner)
    assert np.allclose(np.diag(new)[:3], (1.0, 1.0, 1.0))


def test_missing_cases_are_named_and_partial_is_allowed(tmp_path):
    for n in (57, 18, 50):
        write_case(tmp_path / "raw", n)
    (tmp_path / "raw" / "images" / "image0018.nii.gz").unlink()
    with pytest.raises(DataError, match=r"found 2 of 82 .*missing: image0018, case 0062, case 0031"):
        prepare("pancreas-ct", tmp_path / "raw", tmp_path / "out")
    out = prepare("pancreas-ct", tmp_path / "raw", tmp_path / "out", allow_partial=True, image_order=1)
    s = json.loads((out / "splits" / "trial_0_labeled_10.json").read_text())
    assert s["train"] == ["pancreas_0057"] and s["test"] == ["pancreas_0050"] and s["labeled"] == ["pancreas_0057"]


def test_bad_label_and_shape_mismatch(tmp_path):
    write_case(tmp_path / "raw", 57, label_value=2)
    with pytest.raises(DataError, match=r"label0057.nii.gz has label values \[2\]"):
        prepare("pancreas-ct", tmp_path / "raw", tmp_path / "out", allow_partial=True)
    write_case(tmp_path / "raw2", 57)
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.float32), np.eye(4)),
             str(tmp_path / "raw2" / "images" / "image0057.nii.gz"))
    with pytest.raises(DataError, match="must match"):
        prepare("pancreas-ct", tmp_path / "raw2", tmp_path / "out", allow_partial=True)
    assert not (tmp_path / "out").exists()


def test_dicom_without_simpleitk_says_how_to_fix(tmp_path, monkeypatch):
    write_case(tmp_path / "raw", 57)
    (tmp_path / "raw" / "images" / "image0057.nii.gz").unlink()
    series = tmp_path / "raw" / "Pancreas-CT" / "PANCREAS_0057" / "study" / "series"
    series.mkdir(parents=True)
    (series / "1-001.dcm").write_bytes(b"not really dicom")
    monkeypatch.setitem(sys.modules, "SimpleITK", None)  # import fails as if not installed
    with pytest.raises(DataError, match="pip install SimpleITK"):
        prepare("pancreas-ct", tmp_path / "raw", tmp_path / "out", allow_partial=True)


def test_download_is_refused_with_where_to_get_it(tmp_path):
    with pytest.raises(DataError, match="NBIA Data Retriever"):
        prepare("pancreas-ct", tmp_path, tmp_path / "out", download=True)
