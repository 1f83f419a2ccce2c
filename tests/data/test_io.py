"""uncol.data.io: round trips with known geometry and one DataError per bad input."""
from __future__ import annotations

from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from uncol.data.io import check_pair, read_image, read_label, write_like
from uncol.errors import DataError

AFFINE = np.array([[0.0, 0.0, 3.0, -10.0], [0.0, -2.0, 0.0, 5.0], [1.0, 0.0, 0.0, 7.0], [0, 0, 0, 1]])


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_nifti_round_trip_keeps_affine_and_axis_order(tmp_path: Path, suffix: str) -> None:
    xyz = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # file order (x, y, z)
    img = nib.Nifti1Image(xyz, AFFINE)
    img.header.set_zooms((1.0, 2.0, 3.0))
    nib.save(img, str(tmp_path / f"img{suffix}"))
    vol = read_image(tmp_path / f"img{suffix}")
    assert vol.shape == (6, 5, 4) and vol.array.dtype == np.float32
    np.testing.assert_array_equal(vol.array, xyz.transpose().astype(np.float32))
    assert vol.spacing == (3.0, 2.0, 1.0)
    mask = (vol.array > 60).astype(np.int64)  # torch order
    write_like(mask, vol, tmp_path / f"mask{suffix}")
    out = nib.load(str(tmp_path / f"mask{suffix}"))
    np.testing.assert_allclose(out.affine, AFFINE)
    assert out.shape == (4, 5, 6)
    np.testing.assert_array_equal(np.asarray(out.dataobj), (xyz > 60).astype(np.uint8))
    assert np.asarray(out.dataobj).dtype == np.uint8
    back = read_label(tmp_path / f"mask{suffix}")
    np.testing.assert_array_equal(back.array, mask)
    assert not list(tmp_path.glob(".*"))  # no temp file left


def test_nifti_4d_singleton_and_class_maps(tmp_path: Path) -> None:
    a = np.random.default_rng(0).random((3, 4, 5, 1)).astype(np.float32)
    vol = read_image(save_nifti(tmp_path / "a.nii.gz", a))
    assert vol.shape == (5, 4, 3)
    probs = np.stack([vol.array, 1 - vol.array])  # (K, *S)
    write_like(probs, vol, tmp_path / "p.nii.gz")
    out = np.asarray(nib.load(str(tmp_path / "p.nii.gz")).dataobj)
    assert out.shape == (3, 4, 5, 2)
    np.testing.assert_allclose(out[..., 0], a[..., 0])


def test_png_rgb_to_gray_spacing_and_round_trip(tmp_path: Path) -> None:
    rgb = np.zeros((6, 9, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(tmp_path / "im.png")
    vol = read_image(tmp_path / "im.png", png_spacing=0.25)
    assert vol.shape == (6, 9) and vol.spacing == (0.25, 0.25) and vol.affine is None
    assert np.allclose(vol.array, 76)  # ITU-R 601 luma of pure red
    mask = np.zeros((6, 9), np.int64)
    mask[2:4, 3:7] = 1
    write_like(mask, vol, tmp_path / "m.png")
    back = read_label(tmp_path / "m.png")
    np.testing.assert_array_equal(back.array, mask)
    write_like(np.full((6, 9), 0.5, np.float32), vol, tmp_path / "map.png")
    assert np.array(Image.open(tmp_path / "map.png")).max() == 128


def test_h5_image_label_and_spacing(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.create_dataset("image", data=np.ones((3, 4, 5), np.float64)).attrs["spacing"] = [2.0, 1.0, 1.0]
        f.create_dataset("label", data=np.zeros((3, 4, 5), np.uint8))
    im, lb = read_image(tmp_path / "c.h5"), read_label(tmp_path / "c.h5")
    assert im.shape == (3, 4, 5) and im.spacing == (2.0, 1.0, 1.0) and lb.spacing == (1.0, 1.0, 1.0)
    check_pair(im, lb)


def test_float_stored_integer_labels_accepted(tmp_path: Path) -> None:
    lb = read_label(save_nifti(tmp_path / "l.nii.gz", np.array([[[0.0, 1.0], [2.0, 0.0]]], np.float32)))
    assert lb.array.dtype == np.uint8 and set(np.unique(lb.array)) == {0, 1, 2}


def _truncated(tmp_path: Path) -> Path:
    p = save_nifti(tmp_path / "trunc.nii.gz", np.ones((20, 20, 20), np.float32))
    p.write_bytes(p.read_bytes()[:200])
    return p


BAD = {
    "truncated": (_truncated, read_image, "truncated"),
    "garbage png": (lambda t: (t / "bad.png").write_bytes(b"not a png") and t / "bad.png", read_image, "cannot read"),
    "4d": (lambda t: save_nifti(t / "four.nii.gz", np.ones((2, 2, 2, 3), np.float32)), read_image, "4D"),
    "zero size": (lambda t: save_nifti(t / "empty.nii.gz", np.ones((0, 2, 2), np.float32)), read_image, "zero size"),
    "nan": (lambda t: save_nifti(t / "nan.nii.gz", np.array([[[np.nan, 1.0]]], np.float32)), read_image, "NaN"),
    "inf": (lambda t: save_nifti(t / "inf.nii.gz", np.array([[[np.inf, 1.0]]], np.float32)), read_image, "NaN or Inf"),
    "non-integer label": (
        lambda t: save_nifti(t / "frac.nii.gz", np.array([[[0.5, 1.0]]], np.float32)), read_label, "non-integer"),
    "missing": (lambda t: t / "missing.nii.gz", read_image, "not found"),
    "suffix": (lambda t: (t / "x.jpg").write_bytes(b"x") and t / "x.jpg", read_image, "unsupported"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_data_error_naming_the_file(tmp_path: Path, case: str) -> None:
    make, reader, words = BAD[case]
    path = make(tmp_path)
    with pytest.raises(DataError) as e:
        reader(path)
    msg = str(e.value)
    assert path.name in msg and words in msg and "\n" not in msg


def test_shape_mismatch_names_label(tmp_path: Path) -> None:
    im = read_image(save_nifti(tmp_path / "im.nii.gz", np.ones((4, 4, 4), np.float32)))
    lb = read_label(save_nifti(tmp_path / "lb.nii.gz", np.zeros((4, 4, 3), np.uint8)))
    with pytest.raises(DataError, match="lb.nii.gz: label shape"):
        check_pair(im, lb)


def test_write_like_rejects_wrong_shape(tmp_path: Path) -> None:
    im = read_image(save_nifti(tmp_path / "im.nii.gz", np.ones((4, 4, 4), np.float32)))
    with pytest.raises(DataError, match="does not match"):
        write_like(np.zeros((4, 4, 3)), im, tmp_path / "o.nii.gz")
    assert not (tmp_path / "o.nii.gz").exists()
