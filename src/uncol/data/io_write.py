"""Writers behind :func:`uncol.data.io.write_like`: PNG values (visible or raw), H5, and NIfTI under a copy
of the reference's header; :func:`visible_to_index` reads visible PNG masks back."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from uncol.errors import DataError


def png_values_of(array: np.ndarray, path: Path, num_classes: int | None) -> np.ndarray:
    if array.ndim != 2:
        raise DataError(f"{path}: PNG output needs a 2D array, got shape {array.shape}; write .nii.gz instead")
    if array.dtype.kind == "f":
        if array.size and (array.min() < 0 or array.max() > 1):
            raise DataError(f"{path}: float maps written as PNG must lie in [0, 1]; write .nii.gz instead")
        return np.round(array * 255).astype(np.uint8)
    if num_classes is not None and num_classes > 1:
        if array.size and array.max() >= num_classes:
            raise DataError(f"{path}: mask value {int(array.max())} is not among the {num_classes} classes")
        return (array.astype(np.int64) * 255 // (num_classes - 1)).astype(np.uint8)
    if array.size and (array.min() < 0 or array.max() > 255):
        raise DataError(f"{path}: mask values outside 0..255 cannot be stored in an 8-bit PNG; write .nii.gz")
    return array.astype(np.uint8)


def visible_to_index(array: np.ndarray, num_classes: int) -> np.ndarray | None:
    """A PNG mask written with visible values (``index * 255 // (K - 1)``) back to class indices, or None
    when its values are not exactly such values (then it holds the indices themselves)."""
    if num_classes < 2 or array.size == 0 or int(array.max()) < num_classes:
        return None
    levels = np.arange(num_classes) * 255 // (num_classes - 1)
    lut = np.full(256, -1, np.int64)
    lut[levels] = np.arange(num_classes)
    if array.min() < 0 or array.max() > 255 or (lut[array.astype(np.int64)] < 0).any():
        return None
    return lut[array.astype(np.int64)].astype(np.uint8)


def save_png(out: np.ndarray, p: Path) -> None:
    from PIL import Image

    Image.fromarray(out).save(p, format="PNG")


def save_h5(array: np.ndarray, ref: Any, p: Path) -> None:
    import h5py

    with h5py.File(p, "w") as f:
        ds = f.create_dataset("label", data=array, compression="gzip")
        ds.attrs["spacing"] = np.asarray(ref.spacing, dtype=np.float64)


def save_nifti(array: np.ndarray, ref: Any, p: Path, names: dict[int, str] | None) -> None:
    """NIfTI under a copy of the reference's header (all fields kept but type, scaling, intent)."""
    import nibabel as nib

    data = array.transpose() if array.ndim == ref.ndim else np.stack([a.transpose() for a in array], axis=-1)
    affine = ref.affine if ref.affine is not None else np.diag(list(reversed(ref.spacing)) + [1.0] * (4 - ref.ndim))
    if affine.shape != (4, 4):
        affine = np.eye(4)
    header = ref.header.copy() if isinstance(ref.header, nib.Nifti1Header) else None
    img = nib.Nifti1Image(np.ascontiguousarray(data), affine, header=header)
    img.header.set_data_dtype(data.dtype)
    img.header.set_slope_inter(1.0, 0.0)
    img.header["cal_min"], img.header["cal_max"] = 0.0, 0.0
    if header is not None:
        img.set_qform(affine, int(header["qform_code"]) or 1)
        img.set_sform(affine, int(header["sform_code"]) or 1)
    if names is not None:
        img.header.set_intent("label", name="labels")
        img.header["descrip"] = " ".join(f"{k}={v}" for k, v in sorted(names.items()) if k)[:79].encode()
    else:
        img.header.set_intent("none")
    nib.save(img, str(p))  # nibabel picks the format from the name; the temp file keeps the real suffix
