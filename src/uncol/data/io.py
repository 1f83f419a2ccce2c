"""Reading and writing images and masks: NIfTI (``.nii``, ``.nii.gz``), PNG, H5, and through SimpleITK
DICOM (a series folder or one ``.dcm``), NRRD and MetaImage (:mod:`uncol.data.io_sitk`).

Arrays are returned in torch order: a NIfTI ``(x, y, z)`` array is transposed to ``(z, y, x)``
(its spacing likewise), a PNG is ``(H, W)``, an H5 dataset is taken as stored (the SSL4MIS/BCP
files are already in the order the networks see). :func:`write_like` inverts the transpose, so
a written mask has the reference's affine and axis order and opens aligned in ITK-SNAP.

Every failure is a :class:`~uncol.errors.DataError` whose one-line message names the file.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from uncol.data.io_sitk import (
    SITK_SUFFIXES,
    SitkGeometry,
    is_dicom_series,
    plain_geometry,
    read_sitk,
    write_sitk,
)
from uncol.data.io_write import png_values_of, save_h5, save_nifti, save_png
from uncol.errors import DataError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
PNG_SUFFIXES = (".png",)
H5_SUFFIXES = (".h5", ".hdf5")
SUFFIXES = NIFTI_SUFFIXES + PNG_SUFFIXES + H5_SUFFIXES + SITK_SUFFIXES


@dataclass
class Volume:
    """One image or mask.

    ``array``: ``(*S)`` in torch order (``(D, H, W)`` or ``(H, W)``); float32 for images, the
    smallest fitting integer type for labels. ``spacing``: mm per voxel, same order. ``affine``:
    the NIfTI 4x4 voxel-to-world matrix of the *file's* ``(x, y, z)`` index order, or None.
    ``header``: the NIfTI header (kept so written masks carry the same qform/sform codes).
    ``spacing_known``: False when the file stores no voxel size and none was given (a PNG without a
    pixel size, an H5 without a ``spacing`` attribute): ``spacing`` is then 1 per axis, i.e. pixels.
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray | None
    path: Path
    header: Any = None
    spacing_known: bool = True

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def ndim(self) -> int:
        return self.array.ndim


def split_suffix(path: str | Path) -> tuple[str, str]:
    """``"a/x.nii.gz"`` -> ``("x", ".nii.gz")``; the suffix is lower-case, ``""`` if unknown."""
    name = Path(path).name
    for suf in SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)], suf
    return Path(name).stem, ""


def _fmt(path: Path) -> str:
    suffix = split_suffix(path)[1]
    if not suffix and path.is_dir() and is_dicom_series(path):
        return "dicom"
    if suffix == ".dcm":
        return "dicom"
    if not suffix:
        raise DataError(
            f"{path}: unsupported file type; use NIfTI (.nii, .nii.gz), PNG (.png), H5 (.h5 with 'image'/'label'), "
            "NRRD (.nrrd), MetaImage (.mha/.mhd) or DICOM (.dcm, or a folder holding one series)"
        )
    return {".nii.gz": "nifti", ".nii": "nifti", ".png": "png", ".h5": "h5", ".hdf5": "h5"}.get(suffix, "sitk")


def _reason(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:160]


def _read_nifti(path: Path, label: bool) -> tuple[np.ndarray, tuple[float, ...], np.ndarray, Any]:
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj)
    if not label:
        data = data.astype(np.float32, copy=False)
    zooms = tuple(float(z) for z in img.header.get_zooms())
    if data.size == 0:
        raise DataError(f"{path}: image has zero size (shape {tuple(img.shape)}); remove or re-export it")
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim not in (2, 3):
        raise DataError(
            f"{path}: image is {data.ndim}D with shape {tuple(data.shape)}; uncol takes one channel, "
            "so pass a 2D/3D file (split multi-channel or time series files into one file per channel)"
        )
    spacing = tuple(reversed(zooms[: data.ndim]))
    return np.ascontiguousarray(data.transpose()), spacing, np.asarray(img.affine, dtype=np.float64), img.header


def _read_png(path: Path, label: bool) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if label:
            data = np.array(im.convert("L") if im.mode in ("RGB", "RGBA", "LA") else im)
        else:
            keep = im.mode in ("L", "F") or im.mode.startswith("I")  # 8/16/32-bit gray as stored
            data = np.array(im if keep else im.convert("L"))
    if data.ndim != 2:
        raise DataError(f"{path}: PNG has shape {data.shape}; expected a gray or RGB image")
    return data


def _read_h5(path: Path, key: str) -> tuple[np.ndarray, tuple[float, ...] | None]:
    import h5py

    with h5py.File(path, "r") as f:
        if key not in f:
            raise DataError(f"{path}: H5 file has no {key!r} dataset (found {sorted(f.keys())}); store it under {key!r}")
        ds = f[key]
        data = np.asarray(ds[()])
        sp = ds.attrs.get("spacing", f.attrs.get("spacing"))
    spacing = tuple(float(s) for s in np.atleast_1d(sp)) if sp is not None else None
    if data.ndim == 4 and data.shape[0] == 1:
        data = data[0]
    if data.ndim not in (2, 3):
        raise DataError(f"{path}: {key!r} is {data.ndim}D with shape {data.shape}; uncol takes one 2D/3D channel")
    if spacing is not None and len(spacing) != data.ndim:
        raise DataError(f"{path}: spacing attribute {spacing} does not match the {data.ndim}D {key!r} array")
    return data, spacing


def _read(path: str | Path, label: bool, png_spacing: float | None, spacing: Sequence[float] | None) -> Volume:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found; check the path (and dataset.json if it lists it)")
    fmt = _fmt(path)
    affine, header, sp = None, None, None
    try:
        if fmt == "nifti":
            data, sp, affine, header = _read_nifti(path, label)
        elif fmt in ("sitk", "dicom"):
            data, sp, header = read_sitk(path, label)
        elif fmt == "png":
            data = _read_png(path, label)
        else:
            data, sp = _read_h5(path, "label" if label else "image")
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001  nibabel / PIL / h5py / zlib raise many types for a broken file
        raise DataError(f"{path}: cannot read the file ({_reason(e)}); it is truncated or not a valid {fmt} file, "
                        "re-export it") from None
    if data.size == 0:
        raise DataError(f"{path}: image has zero size (shape {tuple(data.shape)}); remove or re-export it")
    if sp is None:  # the file stores no voxel size: the one given, else pixels
        per_pixel = png_spacing if fmt == "png" else None
        given = spacing if spacing is not None else (None if per_pixel is None else (per_pixel,) * data.ndim)
        if given is not None and len(given) != data.ndim:
            raise DataError(f"{path}: spacing {tuple(given)} has {len(given)} values for a {data.ndim}D image; "
                            f"give {data.ndim} values (torch order, mm)")
        known = given is not None
        sp = tuple(given) if known else (1.0,) * data.ndim
        return Volume(data, tuple(float(s) for s in sp), affine, path, header, spacing_known=known)
    return Volume(data, tuple(float(s) for s in sp), affine, path, header)


def read_image(path: str | Path, png_spacing: float | None = None, spacing: Sequence[float] | None = None) -> Volume:
    """Read an image as float32 ``(*S)`` in torch order; NaN/Inf intensities are a DataError.

    Files that store no voxel size (PNG; H5 without a ``spacing`` attribute on the ``image`` dataset or
    the file) take ``spacing`` (per axis, torch order, mm; e.g. from a dataset.json entry), else
    ``png_spacing`` (mm per pixel, every axis), else 1 with ``spacing_known=False`` (pixels).
    Files with a stored voxel size (NIfTI, H5 with the attribute) keep theirs.
    """
    vol = _read(path, label=False, png_spacing=png_spacing, spacing=spacing)
    vol.array = vol.array.astype(np.float32, copy=False)
    if not np.isfinite(vol.array).all():
        n = int((~np.isfinite(vol.array)).sum())
        raise DataError(f"{vol.path}: {n} voxels are NaN or Inf; fix or remove the image (e.g. np.nan_to_num)")
    return vol


def _label_dtype(lo: int, hi: int) -> type:
    for dt in (np.uint8, np.int16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return dt
    return np.int64


def read_label(path: str | Path, png_spacing: float | None = None, spacing: Sequence[float] | None = None) -> Volume:
    """Read a mask as an integer array ``(*S)`` (float-stored integers are accepted).

    Non-integer or negative values are a DataError; the dtype is the smallest that fits. Spacing as
    in :func:`read_image`.
    """
    vol = _read(path, label=True, png_spacing=png_spacing, spacing=spacing)
    a = vol.array
    if a.dtype.kind == "b":
        a = a.astype(np.uint8)
    if a.dtype.kind == "f":
        if not np.isfinite(a).all() or not np.array_equal(a, np.round(a)):
            raise DataError(f"{vol.path}: label has non-integer values; labels must be class indices 0..K-1")
    elif a.dtype.kind not in "iu":
        raise DataError(f"{vol.path}: label has dtype {a.dtype}; labels must be integer class indices 0..K-1")
    lo, hi = int(a.min()), int(a.max())
    if lo < 0:
        raise DataError(f"{vol.path}: label has negative value {lo}; labels must be class indices 0..K-1")
    vol.array = a.astype(_label_dtype(lo, hi), copy=False)
    return vol


def check_pair(image: Volume, label: Volume) -> None:
    """DataError if a label's shape differs from its image's."""
    if image.shape != label.shape:
        raise DataError(
            f"{label.path}: label shape {label.shape} differs from image {image.path.name} shape {image.shape}; "
            "the label must have the image's size (resample it onto the image grid)"
        )


def write_like(
    array: np.ndarray, ref: Volume, path: str | Path, labels: Mapping[int, str] | None = None,
    png_values: str = "visible",
) -> None:
    """Write ``array`` with the geometry of ``ref`` (atomically).

    ``array``: ``(*S)`` (a mask or map) or ``(K, *S)`` (one map per class; not PNG), ``*S`` =
    ``ref.shape`` in torch order. NIfTI of a NIfTI reference: transposed back to the file order under a
    copy of the reference's full header (affine, qform/sform codes, ``xyzt_units``, pixdim; data type,
    scaling and intent set for the new data); a ``(K, *S)`` map becomes 4D ``(x, y, z, K)``. DICOM /
    NRRD / MetaImage references: written through SimpleITK with their origin, spacing, direction and
    metadata (``.nii.gz``, ``.nrrd`` or ``.mha``). PNG: float maps must lie in [0, 1] and are scaled to
    0..255; an integer mask with ``labels`` (K classes) is written with visible values
    ``index * 255 // (K - 1)`` unless ``png_values="raw"`` (the indices as they are).
    H5: stored under ``label`` with a ``spacing`` attribute.
    ``labels`` {index: name} of an integer mask also go into the file: NIfTI intent ``label``
    (1002) and the names in ``descrip`` (80 characters), NRRD/MHA metadata ``uncol_labels`` (JSON);
    :func:`uncol.data.labelmeta.write_label_tables` writes the colour tables beside the masks.
    """
    from uncol.runtime import atomic_write

    path = Path(path)
    fmt = _fmt(path)
    if fmt == "dicom":
        raise DataError(f"{path}: uncol does not write DICOM; write the mask as .nii.gz, .nrrd or .mha")
    if png_values not in ("visible", "raw"):
        raise DataError(f"png_values must be 'visible' or 'raw', got {png_values!r}")
    array = np.asarray(array)
    if array.dtype.kind == "b":
        array = array.astype(np.uint8)
    spatial = array.shape[1:] if array.ndim == ref.ndim + 1 else array.shape
    if tuple(spatial) != ref.shape:
        raise DataError(f"{path}: array shape {array.shape} does not match reference {ref.path.name} shape {ref.shape}")
    if array.dtype.kind in "iu" and array.size:
        array = array.astype(_label_dtype(int(array.min()), int(array.max())), copy=False)
    elif array.dtype.kind == "f" and array.dtype != np.float32:
        array = array.astype(np.float32)
    names = dict(labels) if labels is not None and array.dtype.kind in "iu" else None
    if fmt == "png":
        out = png_values_of(array, path, None if png_values == "raw" or names is None else len(names))
        atomic_write(path, lambda p: save_png(out, p))
    elif fmt == "h5":
        atomic_write(path, lambda p: save_h5(array, ref, p))
    elif isinstance(ref.header, SitkGeometry) or fmt == "sitk":
        geom = ref.header if isinstance(ref.header, SitkGeometry) else _plain_geometry(ref, path)
        meta = {"uncol_labels": json.dumps({str(k): v for k, v in names.items()})} if names else None
        atomic_write_suffixed(path, lambda p: write_sitk(array, geom, p, meta))
    else:
        atomic_write_suffixed(path, lambda p: save_nifti(array, ref, p, names))


def _plain_geometry(ref: Volume, path: Path) -> SitkGeometry:
    if ref.affine is not None:
        raise DataError(f"{path}: a mask of the NIfTI image {ref.path.name} is written as NIfTI; use .nii.gz")
    return plain_geometry(ref.spacing)


def atomic_write_suffixed(path: Path, write: Any) -> None:
    """Like ``atomic_write`` but the temp file keeps ``path``'s suffix (nibabel needs ``.nii.gz``)."""
    from uncol.runtime import atomic_write

    atomic_write(path, write, suffix=split_suffix(path)[1])
