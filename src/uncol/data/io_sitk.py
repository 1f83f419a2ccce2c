"""DICOM (a series folder or one ``.dcm`` file), NRRD and MetaImage (``.mha``/``.mhd``) through SimpleITK.

SimpleITK's array is already in torch order ``(z, y, x)``; its spacing is ``(x, y, z)`` and is
reversed. The geometry (origin, spacing, direction cosines) and the file's own metadata travel with
the :class:`~uncol.data.io.Volume` as a :class:`SitkGeometry` header, and a mask written for it
(:func:`write_sitk`, any format SimpleITK writes: ``.nii.gz``, ``.nrrd``, ``.mha``) carries them all,
so it opens aligned with the image in 3D Slicer and ITK-SNAP. A single DICOM file (a 2D ultrasound or
X-ray frame) is served as a 2D image; a multi-component (RGB) image is converted to gray.
"""
from __future__ import annotations

import contextlib
import locale
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uncol.errors import DataError

SITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")
_SKIP_META = ("ITK_", "NRRD_")  # written by the writer itself


@dataclass
class SitkGeometry:
    """Physical geometry of a SimpleITK image: ``origin``, ``spacing`` (x, y, z order, as ITK) and
    ``direction`` (row-major cosines), its metadata, and whether a depth-1 axis was squeezed to 2D."""

    origin: tuple[float, ...]
    spacing: tuple[float, ...]
    direction: tuple[float, ...]
    metadata: dict[str, str] = field(default_factory=dict)
    squeezed: bool = False


@contextlib.contextmanager
def keep_locale() -> Iterator[None]:
    """Restore the process locale afterwards: GDCM's DICOM writer sets it to ``C``, after which Python
    writes text files as ASCII (a later ``±`` in a report would fail)."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _sitk() -> Any:
    """SimpleITK, imported lazily, with its global warnings (printed by ITK straight to stderr, e.g. about
    a DICOM tag or an orientation it rounds) turned off: problems reach the user as one ``DataError`` line."""
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    return sitk


def is_dicom_series(path: Path) -> bool:
    """True for a folder holding DICOM files (``*.dcm``, or files SimpleITK's GDCM lists as a series)."""
    if not path.is_dir():
        return False
    if any(p.suffix.lower() == ".dcm" for p in path.iterdir()):
        return True
    sitk = _sitk()
    return bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path)))


def _load(path: Path) -> Any:
    sitk = _sitk()
    if not path.is_dir():
        return sitk.ReadImage(str(path))
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path))
    if len(series) != 1:
        raise DataError(f"{path}: folder holds {len(series)} DICOM series; put one series per folder")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path), series[0]))
    return reader.Execute()


def read_sitk(path: Path, label: bool) -> tuple[np.ndarray, tuple[float, ...], SitkGeometry]:
    """``(array (*S) torch order, spacing (same order, mm), geometry)`` of a SimpleITK-readable file/series."""
    sitk = _sitk()
    with keep_locale():
        img = _load(path)
    data = sitk.GetArrayFromImage(img)
    if img.GetNumberOfComponentsPerPixel() > 1:
        if label:
            raise DataError(f"{path}: label has {img.GetNumberOfComponentsPerPixel()} components per voxel; "
                            "labels must be one integer class index per voxel")
        data = data.astype(np.float32).mean(axis=-1)
    meta = {k: img.GetMetaData(k) for k in img.GetMetaDataKeys()
            if not k.startswith(_SKIP_META) and "|" not in k}
    geom = SitkGeometry(tuple(img.GetOrigin()), tuple(img.GetSpacing()), tuple(img.GetDirection()), meta)
    spacing = tuple(reversed(img.GetSpacing()))
    if data.ndim == 3 and data.shape[0] == 1 and not path.is_dir():
        data, spacing, geom.squeezed = data[0], spacing[1:], True
    if data.ndim not in (2, 3):
        raise DataError(f"{path}: image is {data.ndim}D with shape {data.shape}; uncol takes one 2D/3D channel")
    return np.ascontiguousarray(data), tuple(float(s) for s in spacing), geom


def write_sitk(array: np.ndarray, geom: SitkGeometry, path: Path, extra_meta: dict[str, str] | None = None) -> None:
    """Write ``array`` ``(*S)`` (or ``(K, *S)``: one component per class) with ``geom``'s origin, spacing,
    direction and metadata (plus ``extra_meta``), compressed, to ``path`` (the format from its suffix).
    Not atomic by itself: call it on a temporary path (``uncol.data.io.write_like`` does)."""
    sitk = _sitk()
    vector = array.ndim == len(geom.spacing) + 1 - int(geom.squeezed)
    a = np.moveaxis(array, 0, -1) if vector else array
    if geom.squeezed:
        a = a[None]
    img = sitk.GetImageFromArray(np.ascontiguousarray(a), isVector=vector)
    img.SetOrigin(geom.origin)
    img.SetSpacing(geom.spacing)
    img.SetDirection(geom.direction)
    for k, v in {**geom.metadata, **(extra_meta or {})}.items():
        img.SetMetaData(k, v)
    with keep_locale():
        sitk.WriteImage(img, str(path), True)


def plain_geometry(spacing: tuple[float, ...]) -> SitkGeometry:
    """An identity-oriented geometry with ``spacing`` (torch order) for a reference without one."""
    n = len(spacing)
    return SitkGeometry((0.0,) * n, tuple(reversed(spacing)), tuple(np.eye(n).ravel().tolist()))
