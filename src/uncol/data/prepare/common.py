"""Shared helpers for the dataset preparers: the ``PREPARERS`` registry, NIfTI I/O, resampling, splits,
atomic output (downloads: :mod:`uncol.data.prepare.download`).

Every prepared dataset folder has the same layout (MSD / nnU-Net style)::

    OUT/
      dataset.json               labels {"0": "background", ...}, training [{"image": "./imagesTr/<id>.nii.gz",
                                 "label": "./labelsTr/<id>.nii.gz"}], plus name/licence/reference
      imagesTr/<id>.nii.gz       float32 image (2D or 3D NIfTI, affine keeps the voxel spacing in mm)
      labelsTr/<id>.nii.gz       uint8 label map, values in [0, num_classes)
      splits/trial_<k>.json      {"train", "val", "test", "meta"}: data.split.labeled then draws the labelled set
      splits/trial_<k>_labeled_<pct>.json   same train/val/test plus "labeled" = the first N of the trial's
                                 seeded train order, "unlabeled" = the rest (nested: 5 % inside 10 %)
      prepare_info.json          preparer, options, seed, sources, label mapping, per-case shapes

The folder is written to a hidden temp folder next to OUT and renamed at the end, so a failure never
leaves a half-written OUT.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from uncol.errors import DataError
from uncol.registry import Registry
from uncol.runtime import atomic_write_json

#: name -> ``fn(raw_dir: Path, out_dir: Path, *, download: bool, seed: int, **options) -> Path``
PREPARERS: Registry[Callable[..., Path]] = Registry("dataset preparer")

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def nifti_errors() -> tuple[type[BaseException], ...]:
    from nibabel.filebasedimages import ImageFileError

    return (ImageFileError, OSError, EOFError, ValueError, zlib.error)


# ----------------------------------------------------------------------------- messages
def short_list(items: Sequence[str], limit: int = 8) -> str:
    """'a, b, c and 12 more' for error messages that must stay on one line."""
    items = [str(i) for i in items]
    head = ", ".join(items[:limit])
    return head + (f" and {len(items) - limit} more" if len(items) > limit else "")


def require_count(found: Sequence[str], expected: int, what: str, where: Path,
                  allow_partial: bool, missing: Sequence[str] = ()) -> None:
    """Raise a DataError unless ``len(found) == expected`` (or a non-empty subset with allow_partial)."""
    if not found:
        raise DataError(f"no {what} found under {where}; point --raw at the unpacked release folder")
    if len(found) == expected or (allow_partial and len(found) < expected):
        return
    detail = f"; missing: {short_list(missing)}" if missing else ""
    fix = ("download/unpack the rest, or pass allow_partial=True (--allow-partial) to prepare a subset"
           if len(found) < expected else "remove the extra files")
    raise DataError(f"found {len(found)} of {expected} {what} under {where}{detail}; {fix}")


# ----------------------------------------------------------------------------- NIfTI
def load_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI file -> (array in nibabel (x, y[, z]) voxel order, 4x4 affine)."""
    import nibabel as nib

    errors = nifti_errors()
    try:
        img = nib.load(str(path))
        return np.asarray(img.dataobj), np.asarray(img.affine, dtype=np.float64)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; check the --raw folder") from None
    except errors as exc:
        raise DataError(f"{path} is not a readable NIfTI file ({exc}); re-download it") from None


def spacing_of(affine: np.ndarray, ndim: int) -> tuple[float, ...]:
    """Voxel spacing in mm of the first ``ndim`` voxel axes (column norms of the affine)."""
    return tuple(float(np.linalg.norm(affine[:3, i])) for i in range(ndim))


def save_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    """Write ``array`` (nibabel voxel order) with ``affine``; the pixdim follows the affine."""
    import nibabel as nib

    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))


def as_label(array: np.ndarray, path: Path) -> np.ndarray:
    """Integer label array; float-stored integers accepted, fractions are a DataError."""
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.int64)
    rounded = np.rint(array)
    if not np.allclose(array, rounded):
        raise DataError(f"{path} has non-integer label values; it is not a label map")
    return rounded.astype(np.int64)


def check_label_values(label: np.ndarray, allowed: Sequence[int], path: Path) -> None:
    extra = sorted(set(np.unique(label).tolist()) - {int(a) for a in allowed})
    if extra:
        raise DataError(f"{path} has label values {extra} outside the expected {sorted(allowed)}; "
                        "check that the file belongs to this dataset release")


# ----------------------------------------------------------------------------- geometry
def resize(array: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """Resize to exactly ``shape`` (pixel-centre aligned); order 1 = (bi/tri)linear, 0 = nearest."""
    from scipy import ndimage

    shape = tuple(int(s) for s in shape)
    if tuple(array.shape) == shape:
        return array.copy()
    factors = [o / i for o, i in zip(shape, array.shape)]
    src = array.astype(np.float32) if order > 0 else array
    out = ndimage.zoom(src, factors, order=order, mode="nearest", grid_mode=True, prefilter=order > 1)
    if out.shape != shape:  # zoom rounds the output size; never happens with exact factors, but be safe
        raise DataError(f"internal resize error: got {out.shape}, wanted {shape}")
    return out


def resized_affine(affine: np.ndarray, in_shape: Sequence[int], out_shape: Sequence[int]) -> np.ndarray:
    """Affine of a pixel-centre-aligned resize of the first len(in_shape) voxel axes."""
    new = affine.copy()
    offset = np.zeros(4)
    offset[3] = 1.0
    for i, (n_in, n_out) in enumerate(zip(in_shape, out_shape)):
        f = n_in / n_out
        new[:3, i] = affine[:3, i] * f
        offset[i] = 0.5 * f - 0.5  # where the new voxel 0 centre lies, in old voxel units
    new[:3, 3] = (affine @ offset)[:3]
    return new


def cropped_affine(affine: np.ndarray, start: Sequence[int]) -> np.ndarray:
    new = affine.copy()
    offset = np.zeros(4)
    offset[: len(start)] = start
    offset[3] = 1.0
    new[:3, 3] = (affine @ offset)[:3]
    return new


def resample_shape(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]) -> tuple[int, ...]:
    """floor(size * spacing / target), at least 1 (the MC-Net notebook truncates the same way)."""
    return tuple(max(1, int(n * s / t)) for n, s, t in zip(shape, spacing, target))


# ----------------------------------------------------------------------------- splits
def trial_splits(ids: Sequence[str], seed: int, n_trials: int = 5,
                 val_fraction: float = 0.1) -> list[dict[str, list[str]]]:
    """``n_trials`` train/val/test splits, 7:1:2 for five trials, seeded and reproducible.

    The ids are shuffled once with ``seed`` and cut into ``n_trials`` disjoint test folds of near-equal
    size (1/5 = 2/10 of the ids for five trials), so over the trials every subject is tested once.
    The rest of trial k is shuffled with ``seed + 1 + k``; its first round(n * val_fraction) ids are the
    validation set, the others the training set, kept in that seeded order (labelled subsets are its
    first N, so smaller subsets are nested in larger ones).
    """
    ids = sorted(set(ids))
    n = len(ids)
    n_val = round(n * val_fraction)
    if n < n_trials or n - math.ceil(n / n_trials) - n_val < 1:
        raise DataError(f"{n} cases are too few for {n_trials} train/val/test trials; add cases")
    order = [ids[i] for i in np.random.default_rng(seed).permutation(n)]
    folds = np.array_split(np.arange(n), n_trials)
    out = []
    for k in range(n_trials):
        test = {order[i] for i in folds[k]}
        rest = [i for i in order if i not in test]
        rest = [rest[i] for i in np.random.default_rng(seed + 1 + k).permutation(len(rest))]
        out.append({"train": rest[n_val:], "val": sorted(rest[:n_val]), "test": sorted(test)})
    return out


def labeled_count(n_train: int, fraction: float) -> int:
    return max(1, math.floor(n_train * fraction + 0.5))


def split_record(train: list[str], val: list[str], test: list[str], n_labeled: int | None,
                 meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """A split file for ``uncol.data.splits.Split.load``.

    ``n_labeled=None`` leaves out ``labeled``/``unlabeled`` so that ``data.split.labeled`` draws them;
    otherwise ``labeled`` is the first ``n_labeled`` of ``train`` and ``unlabeled`` the rest.
    """
    rec: dict[str, Any] = {"train": list(train), "val": list(val), "test": list(test)}
    if n_labeled is not None:
        rec.update(labeled=list(train[:n_labeled]), unlabeled=list(train[n_labeled:]))
    if meta:
        rec["meta"] = dict(meta)
    return rec


def write_split_files(root: Path, trials: list[dict[str, list[str]]], labeled: dict[float, int | float],
                      meta: dict[str, Any] | None = None) -> list[str]:
    """Write ``splits/trial_k.json`` and ``splits/trial_k_labeled_<pct>.json``; return the file names.

    ``labeled`` maps a percentage (for the file name) to a fraction of the train set (float < 1)
    or a fixed count (int).
    """
    names = []
    for k, t in enumerate(trials):
        m = {**(meta or {}), "trial": k}
        files = {f"trial_{k}.json": split_record(t["train"], t["val"], t["test"], None, m)}
        for pct, amount in labeled.items():
            n = amount if isinstance(amount, int) else labeled_count(len(t["train"]), amount)
            files[f"trial_{k}_labeled_{pct:g}.json"] = split_record(
                t["train"], t["val"], t["test"], n, {**m, "labeled_percent": pct})
        for name, rec in files.items():
            atomic_write_json(root / "splits" / name, rec)
            names.append(f"splits/{name}")
    return names


# ----------------------------------------------------------------------------- dataset.json
def write_dataset_json(root: Path, *, name: str, description: str, labels: dict[int, str],
                       case_ids: Sequence[str], ndim: int, modality: str, reference: str,
                       licence: str) -> None:
    training = [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in case_ids]
    atomic_write_json(root / "dataset.json", {
        "name": name, "description": description, "reference": reference, "licence": licence,
        "tensorImageSize": f"{ndim}D", "modality": {"0": modality},
        "labels": {str(k): v for k, v in sorted(labels.items())},
        "numTraining": len(training), "numTest": 0, "training": training, "test": [],
    })


# ----------------------------------------------------------------------------- atomic output folder
@contextlib.contextmanager
def staged_output(out_dir: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp folder next to ``out_dir``; rename it onto ``out_dir`` only if the block succeeds."""
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise DataError(f"{out_dir} exists and is not empty; choose another --out or pass overwrite=True (--overwrite)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        yield tmp
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_info(root: Path, info: dict[str, Any]) -> None:
    atomic_write_json(root / "prepare_info.json", json.loads(json.dumps(info, default=_jsonable)))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, (np.ndarray, tuple, set)):
        return list(obj.tolist() if isinstance(obj, np.ndarray) else obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")
