"""DICOM series, NRRD and MHA through SimpleITK; written masks keep the input's header; label tables; PNG values."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from uncol.data.io import read_image, read_label, write_like
from uncol.data.io_sitk import keep_locale
from uncol.errors import DataError

DIRECTION = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # a 90-degree in-plane rotation


def _volume(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1000, (4, 6, 5)).astype(np.int16)  # (z, y, x)


def write_dicom_series(folder: Path, arr_zyx: np.ndarray, spacing_xyz: tuple[float, float, float],
                       origin: tuple[float, float, float]) -> None:
    """One CT-like DICOM file per slice, with the position/orientation tags GDCM sorts by."""
    folder.mkdir(parents=True)
    uid = "1.2.826.0.1.3680043.2.1125.1.99"
    for z in range(arr_zyx.shape[0]):
        sl = sitk.GetImageFromArray(arr_zyx[z:z + 1])
        sl.SetSpacing(spacing_xyz)
        pos = (origin[0], origin[1], origin[2] + z * spacing_xyz[2])
        sl.SetOrigin(pos)
        for tag, value in [("0008|0060", "CT"), ("0020|000e", uid), ("0020|000d", uid + ".0"),
                           ("0020|0013", str(z + 1)), ("0020|0032", "\\".join(map(str, pos))),
                           ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0018|0050", str(spacing_xyz[2])),
                           ("0028|0030", f"{spacing_xyz[1]}\\{spacing_xyz[0]}")]:
            sl.SetMetaData(tag, value)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(folder / f"slice_{z:03d}.dcm"))
        with keep_locale():  # GDCM's writer sets the C locale
            writer.Execute(sl)


def test_dicom_series_reads_in_torch_order_and_masks_keep_its_geometry(tmp_path: Path) -> None:
    arr = _volume()
    write_dicom_series(tmp_path / "series", arr, (0.7, 0.8, 2.5), (-10.0, 5.0, 30.0))
    vol = read_image(tmp_path / "series")
    assert vol.shape == (4, 6, 5) and np.array_equal(vol.array, arr.astype(np.float32))
    assert vol.spacing == pytest.approx((2.5, 0.8, 0.7))
    mask = (arr > 500).astype(np.uint8)
    write_like(mask, vol, tmp_path / "series_mask.nii.gz", labels={0: "background", 1: "bright"})
    out = sitk.ReadImage(str(tmp_path / "series_mask.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(out), mask)
    assert out.GetOrigin() == pytest.approx((-10.0, 5.0, 30.0)) and out.GetSpacing() == pytest.approx((0.7, 0.8, 2.5))
    with pytest.raises(DataError, match="does not write DICOM"):
        write_like(mask, vol, tmp_path / "x.dcm")


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_nrrd_and_mha_round_trip_with_origin_spacing_direction_and_metadata(tmp_path: Path, suffix: str) -> None:
    arr = _volume(1)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.5, 0.6, 3.0))
    img.SetOrigin((1.0, -2.0, 7.5))
    img.SetDirection(DIRECTION)
    img.SetMetaData("acquisition", "site-7")
    sitk.WriteImage(img, str(tmp_path / f"img{suffix}"))
    vol = read_image(tmp_path / f"img{suffix}")
    assert vol.spacing == pytest.approx((3.0, 0.6, 0.5)) and np.array_equal(vol.array, arr.astype(np.float32))
    mask = (arr % 3).astype(np.uint8)
    write_like(mask, vol, tmp_path / f"mask{suffix}", labels={0: "bg", 1: "a", 2: "b"})
    out = sitk.ReadImage(str(tmp_path / f"mask{suffix}"))
    assert np.array_equal(sitk.GetArrayFromImage(out), mask)
    assert out.GetDirection() == pytest.approx(DIRECTION) and out.GetOrigin() == pytest.approx((1.0, -2.0, 7.5))
    assert out.GetSpacing() == pytest.approx((0.5, 0.6, 3.0)) and out.GetMetaData("acquisition") == "site-7"
    assert json.loads(out.GetMetaData("uncol_labels")) == {"1": "a", "2": "b", "0": "bg"}
    assert np.array_equal(read_label(tmp_path / f"mask{suffix}").array, mask)


def test_nifti_mask_keeps_the_reference_header(tmp_path: Path) -> None:
    affine = np.array([[0, -0.9, 0, 10], [1.1, 0, 0, -5], [0, 0, 2.0, 3], [0, 0, 0, 1]], float)
    img = nib.Nifti1Image(np.random.default_rng(0).random((5, 6, 4)).astype(np.float32), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, 1)
    img.set_sform(affine, 4)
    img.header["descrip"] = b"scanner X"
    nib.save(img, str(tmp_path / "img.nii.gz"))
    vol = read_image(tmp_path / "img.nii.gz")
    mask = (vol.array > 0.5).astype(np.uint8)
    write_like(mask, vol, tmp_path / "mask.nii.gz", labels={0: "background", 1: "tumour"})
    out = nib.load(str(tmp_path / "mask.nii.gz"))
    h = out.header
    assert h.get_xyzt_units() == ("mm", "sec")  # a fresh header would drop these
    assert int(h["qform_code"]) == 1 and int(h["sform_code"]) == 4 and np.allclose(out.affine, affine)
    assert h.get_data_dtype() == np.uint8 and h.get_intent()[0] == "label" and h["descrip"].item() == b"1=tumour"
    assert np.array_equal(np.asarray(out.dataobj).transpose(), mask)
    write_like(np.stack([mask, 1 - mask]).astype(np.float32), vol, tmp_path / "probs.nii.gz")
    probs = nib.load(str(tmp_path / "probs.nii.gz"))
    assert probs.shape == (5, 6, 4, 2) and probs.header.get_xyzt_units() == ("mm", "sec")


def test_png_masks_are_visible_unless_raw_and_are_read_back(tmp_path: Path) -> None:
    from uncol.data.io_write import visible_to_index
    from uncol.eval.evaluate_masks import evaluate_masks

    Image.fromarray(np.zeros((4, 6), np.uint8)).save(tmp_path / "img.png")
    ref = read_image(tmp_path / "img.png")
    mask = np.array([[0, 1, 2, 0, 1, 2]] * 4, np.uint8)
    labels = {0: "bg", 1: "a", 2: "b"}
    write_like(mask, ref, tmp_path / "vis.png", labels=labels)
    write_like(mask, ref, tmp_path / "raw.png", labels=labels, png_values="raw")
    assert np.unique(np.array(Image.open(tmp_path / "vis.png"))).tolist() == [0, 127, 255]
    assert np.unique(np.array(Image.open(tmp_path / "raw.png"))).tolist() == [0, 1, 2]
    assert np.array_equal(visible_to_index(np.array(Image.open(tmp_path / "vis.png")), 3), mask)
    assert visible_to_index(mask, 3) is None  # already indices
    (tmp_path / "p").mkdir()
    (tmp_path / "g").mkdir()
    (tmp_path / "vis.png").rename(tmp_path / "p" / "c.png")
    (tmp_path / "raw.png").rename(tmp_path / "g" / "c.png")
    assert evaluate_masks(tmp_path / "p", tmp_path / "g", labels=labels)["mean"]["dice"] == 1.0


def test_label_tables_for_slicer_itksnap_and_scripts(tmp_path: Path) -> None:
    from uncol.data.labelmeta import read_label_names, write_label_tables

    write_label_tables(tmp_path, {0: "background", 1: "left hippocampus", 2: "right"})
    assert read_label_names(tmp_path / "labels.json") == {0: "background", 1: "left hippocampus", 2: "right"}
    meta = json.loads((tmp_path / "labels.json").read_text())
    assert meta["0"]["color"] == [0, 0, 0] and meta["1"]["color"] == [31, 119, 180]  # tab10 blue
    ctbl = (tmp_path / "labels_slicer.ctbl").read_text().splitlines()
    assert ctbl[2] == "1 left_hippocampus 31 119 180 255"
    snap = (tmp_path / "labels_itksnap.txt").read_text().splitlines()
    assert snap[3].split()[:4] == ["1", "31", "119", "180"] and snap[3].endswith('"left hippocampus"')


def test_import_folder_and_dataset_with_a_dicom_series_image(tmp_path: Path) -> None:
    from uncol.data.dataset import DatasetSpec, import_folder

    arr = _volume(2)
    write_dicom_series(tmp_path / "images" / "pat1", arr, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    (tmp_path / "labels").mkdir()
    lab = sitk.GetImageFromArray((arr > 500).astype(np.uint8))
    sitk.WriteImage(lab, str(tmp_path / "labels" / "pat1.nrrd"))
    spec = import_folder(tmp_path / "images", tmp_path / "labels", tmp_path / "ds")
    assert spec.case_ids == ["pat1"] and spec.ndim == 3 and spec.cases[0].image.is_dir()
    assert DatasetSpec.load(tmp_path / "ds").cases[0].label.name == "pat1.nrrd"
