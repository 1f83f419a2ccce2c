"""NIH Pancreas-CT (TCIA) -> pancreas vs background, preprocessed as in MC-Net / MC-Net+ (the 62/20 split).

Raw release: 82 contrast-enhanced abdominal CT scans from TCIA ("Pancreas-CT", DICOM folders
``Pancreas-CT/PANCREAS_00XX/<study>/<series>/*.dcm``) and the NIfTI labels
``TCIA_pancreas_labels-02-05-2017/label00XX.nii.gz``. Accepted image inputs, per case: a NIfTI
``image00XX.nii.gz`` (MC-Net's converted name) or ``PANCREAS_00XX.nii.gz`` anywhere under RAW, or the
DICOM folder ``PANCREAS_00XX`` (read with SimpleITK, an optional dependency).

Preprocessing, following ycwu1997/MC-Net ``data/Pancreas/Pre-processing.ipynb`` (commit 3253f744):
  1. DICOM -> HU volume with the label's geometry (slices ordered by InstanceNumber, as there).
  2. resample to 1 mm isotropic: new size = floor(size * spacing), image cubic B-spline, label nearest.
  3. CT window level 75 / width 400, i.e. clip to [-125, 275] HU, then scale to [0, 1].
  4. crop x and y (not z) around the pancreas: bounding box widened to at least 96 voxels
     (MC-Net's patch size) and then by 25 voxels on each side, clipped to the volume.
  5. z-score the cropped image (its own mean and std).
Split: MC-Net's ``train.list`` (62 cases, MC-Net/data/Pancreas/train.list @ 39a50864) and
``test.list`` (20 cases, data/Pancreas/test.list @ 3253f744). The labelled subsets are the first 6
(10 %) and first 12 (20 %) cases of train.list: ``labeled_idxs = list(range(labelnum))`` in
code/train_mcnet_3d.py, with labelnum 6 / 12 (their pretrained_pth/PA/Pancreas_CT_MCNet_{6,12}_labeled).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from uncol import __version__
from uncol.data.prepare.common import (
    PREPARERS,
    as_label,
    check_label_values,
    cropped_affine,
    load_nifti,
    require_count,
    resample_shape,
    resize,
    resized_affine,
    save_nifti,
    spacing_of,
    split_record,
    staged_output,
    write_dataset_json,
    write_info,
)
from uncol.errors import DataError
from uncol.runtime import atomic_write_json

# ycwu1997/MC-Net, MC-Net/data/Pancreas/train.list (commit 39a50864a607fb6e664de0dd6a17ab2ba929ace3), in order.
TRAIN = [57, 18, 62, 31, 20, 17, 32, 79, 61, 64, 70, 19, 48, 76, 41, 52, 49, 71, 72, 34, 10, 15, 77, 80,
         27, 47, 22, 14, 68, 58, 7, 11, 24, 42, 82, 35, 12, 55, 75, 78, 16, 13, 53, 23, 56, 33, 38, 30,
         81, 29, 36, 44, 2, 45, 26, 65, 66, 43, 28, 63, 69, 3]
# ycwu1997/MC-Net, data/Pancreas/test.list (commit 3253f744e6f4659ea56bc5ace219ba68048feec0).
TEST = [50, 59, 37, 60, 40, 74, 4, 46, 8, 54, 5, 73, 1, 39, 6, 67, 25, 51, 21, 9]
LABELED = {10: 6, 20: 12}  # percent -> first N of TRAIN
WINDOW = (-125.0, 275.0)   # level 75, width 400 (set_window_wl_ww in the notebook)
MARGIN_XY = 25
MIN_EXTENT_XY = 96


def case_id(n: int) -> str:
    return f"pancreas_{n:04d}"


def _index(raw_dir: Path) -> tuple[dict[int, Path], dict[int, Path]]:
    """One walk over RAW -> (case -> image NIfTI or DICOM folder, case -> label NIfTI)."""
    images: dict[int, Path] = {}
    labels: dict[int, Path] = {}
    for dirpath, dirnames, filenames in os.walk(raw_dir):
        d = Path(dirpath)
        for name in dirnames:
            if name.upper().startswith("PANCREAS_") and name[9:].isdigit():
                images.setdefault(int(name[9:]), d / name)
        for name in filenames:
            stem = name[:-7] if name.endswith(".nii.gz") else name[:-4] if name.endswith(".nii") else None
            if stem is None:
                continue
            for prefix, table in (("image", images), ("PANCREAS_", images), ("label", labels)):
                if stem.startswith(prefix) and stem[len(prefix):].isdigit():
                    table[int(stem[len(prefix):])] = d / name  # a NIfTI wins over a DICOM folder
    return images, labels


def read_dicom_series(folder: Path) -> np.ndarray:
    """HU volume (x, y, z) of the CT series under ``folder``, slices ordered by InstanceNumber.

    Like the MC-Net notebook, the caller gives it the label's geometry (the array must match its shape).
    """
    try:
        import SimpleITK as sitk
    except ImportError:
        raise DataError(f"{folder} is DICOM and SimpleITK is not installed; `pip install SimpleITK` "
                        "or convert the series to NIfTI (imageXXXX.nii.gz) first") from None
    files = []
    for dirpath, _, names in os.walk(folder):
        files += [str(Path(dirpath) / n) for n in names if n.lower().endswith(".dcm")]
    if not files:
        raise DataError(f"{folder} holds no .dcm files; re-download the series from TCIA")

    def instance(f: str) -> int:
        r = sitk.ImageFileReader()
        r.SetFileName(f)
        r.ReadImageInformation()
        return int(r.GetMetaData("0020|0013")) if r.HasMetaDataKey("0020|0013") else 0

    image = sitk.ReadImage(sorted(files, key=instance))  # rescale slope/intercept applied -> HU
    return np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0)).astype(np.float32)


def crop_xy(label: np.ndarray) -> tuple[slice, slice]:
    """MC-Net's crop_roi: bbox of the pancreas in x/y, widened to >= 96 voxels, plus 25 each side."""
    idx = np.nonzero(label)
    box = []
    for axis in (0, 1):
        lo, hi = int(idx[axis].min()), int(idx[axis].max())
        pad = max(MIN_EXTENT_XY - (hi - lo), 0) // 2
        box.append(slice(max(lo - pad - MARGIN_XY, 0), min(hi + pad + MARGIN_XY, label.shape[axis])))
    return box[0], box[1]


def preprocess(image: np.ndarray, label: np.ndarray, affine: np.ndarray, image_order: int = 3
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 2-5 of the module docstring; arrays in (x, y, z) voxel order -> (image, label, affine)."""
    spacing = spacing_of(affine, 3)
    shape = resample_shape(image.shape, spacing, (1.0, 1.0, 1.0))
    affine = resized_affine(affine, image.shape, shape)
    image = resize(image.astype(np.float32), shape, image_order)
    label = resize(label.astype(np.uint8), shape, 0)
    lo, hi = WINDOW
    image = (np.clip(image, lo, hi) - lo) / (hi - lo)
    sx, sy = crop_xy(label)
    image, label = image[sx, sy, :], label[sx, sy, :]
    affine = cropped_affine(affine, (sx.start, sy.start, 0))
    image = (image - image.mean()) / max(float(image.std()), 1e-8)
    return image.astype(np.float32), label.astype(np.uint8), affine


@PREPARERS.register("pancreas-ct")
def prepare_pancreas_ct(raw_dir: Path, out_dir: Path, *, download: bool = False, seed: int = 0,
                        image_order: int = 3, allow_partial: bool = False, overwrite: bool = False) -> Path:
    """Prepare NIH Pancreas-CT; see the module docstring. ``seed`` is unused (the split is fixed)."""
    raw_dir = Path(raw_dir)
    if download:
        raise DataError("Pancreas-CT has no direct download URL: get the DICOMs with TCIA's NBIA Data Retriever and "
                        "the labels from https://www.cancerimagingarchive.net/collection/pancreas-ct/, then pass --raw")
    if not raw_dir.is_dir():
        raise DataError(f"{raw_dir} is not a folder; pass the folder holding the Pancreas-CT images and labels as --raw")
    images, labels = _index(raw_dir)
    wanted = TRAIN + TEST
    complete = [n for n in wanted if n in images and n in labels]
    missing = [f"image{n:04d}" if n in labels else f"label{n:04d}" if n in images else f"case {n:04d}"
               for n in wanted if n not in complete]
    require_count([case_id(n) for n in complete], len(wanted), "Pancreas-CT cases (image + label)",
                  raw_dir, allow_partial, missing)

    cases = {}
    with staged_output(out_dir, overwrite) as tmp:
        for n in complete:
            lab, affine = load_nifti(labels[n])
            lab = as_label(lab, labels[n])
            check_label_values(lab, (0, 1), labels[n])
            if not lab.any():
                raise DataError(f"{labels[n]} is empty; the pancreas crop needs a labelled pancreas")
            src = images[n]
            if src.is_dir():
                img = read_dicom_series(src)
            else:
                img, _ = load_nifti(src)
            if img.shape != lab.shape:
                raise DataError(f"{src} has shape {img.shape} but {labels[n].name} has {lab.shape}; they must match")
            img, lab, aff = preprocess(img, lab, affine, image_order)
            save_nifti(tmp / "imagesTr" / f"{case_id(n)}.nii.gz", img, aff)
            save_nifti(tmp / "labelsTr" / f"{case_id(n)}.nii.gz", lab, aff)
            cases[case_id(n)] = {"source": str(src), "shape": img.shape, "spacing": spacing_of(aff, 3)}
        ids = [case_id(n) for n in complete]
        write_dataset_json(tmp, name="PancreasCT", description="NIH Pancreas-CT, MC-Net preprocessing",
                           labels={0: "background", 1: "pancreas"}, case_ids=ids, ndim=3, modality="CT",
                           reference="Roth et al. 2015/2016, TCIA Pancreas-CT (doi:10.7937/K9/TCIA.2016.tNB1kqBU)",
                           licence="CC BY 3.0 (TCIA Pancreas-CT)")
        train = [case_id(n) for n in TRAIN if n in complete]
        test = [case_id(n) for n in TEST if n in complete]
        meta = {"seed": seed, "trial": 0, "made_by": "uncol data prepare pancreas-ct",
                "source": "ycwu1997/MC-Net train.list/test.list"}
        files = {"trial_0.json": split_record(train, [], test, None, meta)}
        for pct, n_lab in LABELED.items():
            files[f"trial_0_labeled_{pct}.json"] = split_record(train, [], test, min(n_lab, len(train)),
                                                                {**meta, "labeled_percent": pct})
        for name, rec in files.items():
            atomic_write_json(tmp / "splits" / name, rec)
        write_info(tmp, {"preparer": "pancreas-ct", "uncol_version": __version__, "seed": seed,
                         "options": {"image_order": image_order, "allow_partial": allow_partial},
                         "source": {"raw_dir": str(raw_dir.absolute()),
                                    "split": "ycwu1997/MC-Net train.list @39a50864, test.list @3253f744"},
                         "window_hu": WINDOW, "crop": {"margin_xy": MARGIN_XY, "min_extent_xy": MIN_EXTENT_XY},
                         "split_files": [f"splits/{f}" for f in files], "cases": cases})
    return Path(out_dir)
