"""Dataset description: an MSD / nnU-Net v1 style folder with ``dataset.json``, or an nnU-Net v2 raw
folder (``channel_names`` + ``file_ending``, ``imagesTr/{case}_0000.ext``; see :mod:`uncol.data.nnunet`).

``dataset.json`` keys read here::

    {"labels": {"0": "background", "1": "Anterior", ...},   # or the inverse {"background": 0, ...}
     "training": [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}, ...],
     "test": ["./imagesTs/y.nii.gz", ...]}                   # optional; or [{"image", "label"}]

Paths are relative to the folder holding ``dataset.json`` (absolute paths are kept). A case id is
the image file name without its extension(s) (``x.nii.gz`` -> ``x``). Label keys must be the
class indices ``0..K-1``. H5 files may list the same file as image and label.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uncol.data.io import SUFFIXES, check_pair, read_image, read_label, split_suffix
from uncol.data.io_sitk import is_dicom_series
from uncol.data.nnunet import is_nnunet_v2, nnunet_cases
from uncol.data.spacing import read_spacing_csv, spacing_for
from uncol.errors import DataError
from uncol.runtime import read_json_object


@dataclass(frozen=True)
class CaseRef:
    """One case: ``id`` (file name without extension), image path, label path or None, and ``spacing``
    (mm per voxel, torch order) for files that store none (PNG), from the entry's ``"spacing"``."""

    id: str
    image: Path
    label: Path | None
    spacing: tuple[float, ...] | None = None


@dataclass
class DatasetSpec:
    """A parsed dataset: ``root`` folder, ``labels`` {index: name}, training ``cases``, ``test_cases``."""

    root: Path
    labels: dict[int, str]
    cases: list[CaseRef]
    test_cases: list[CaseRef] = field(default_factory=list)
    name: str = ""

    @property
    def num_classes(self) -> int:
        """K, background included."""
        return len(self.labels)

    @property
    def case_ids(self) -> list[str]:
        return [c.id for c in self.cases]

    def case(self, case_id: str) -> CaseRef:
        """The training or test case with this id (DataError if absent)."""
        for c in self.cases + self.test_cases:
            if c.id == case_id:
                return c
        raise DataError(f"{self.root / 'dataset.json'}: no case {case_id!r}; check the split file or the case id")

    @property
    def ndim(self) -> int:
        """2 or 3: the number of spatial dimensions of the files (read from the first image's header)."""
        if not hasattr(self, "_ndim"):
            self._ndim = _file_ndim(self.cases[0].image)
        return self._ndim

    @classmethod
    def load(cls, root: str | Path) -> DatasetSpec:
        """Parse ``root/dataset.json`` (``root`` may also be the json file itself) and check that files exist."""
        root = Path(root)
        jpath = root if root.is_file() else root / "dataset.json"
        root = jpath.parent
        meta = read_json_object(jpath, "dataset.json", "point data.root at a folder with dataset.json or create "
                                "one with `uncol data import-folder IMAGES LABELS OUT`", "'labels' and 'training'")
        labels = parse_labels(meta.get("labels"), jpath)
        if is_nnunet_v2(meta):
            train, test = nnunet_cases(meta, root, jpath)
            return cls(root=root, labels=labels, cases=[CaseRef(*c) for c in train],
                       test_cases=[CaseRef(*c) for c in test], name=str(meta.get("name", root.name)))
        training = meta.get("training")
        if not isinstance(training, list):
            raise DataError(f"{jpath}: key 'training' must be a list of {{\"image\": ..., \"label\": ...}} entries "
                            "(or, for an nnU-Net v2 raw folder, give 'channel_names' and 'file_ending')")
        if not training:
            raise DataError(f"{jpath}: key 'training' is empty; list at least one image/label pair")
        cases = [_parse_entry(e, i, "training", root, jpath, need_label=True) for i, e in enumerate(training)]
        test = meta.get("test", []) or []
        if not isinstance(test, list):
            raise DataError(f"{jpath}: key 'test' must be a list of paths or {{\"image\", \"label\"}} entries")
        test_cases = [_parse_entry(e, i, "test", root, jpath, need_label=False) for i, e in enumerate(test)]
        seen: dict[str, str] = {}
        for key, c in [("training", c) for c in cases] + [("test", c) for c in test_cases]:
            if c.id in seen:
                raise DataError(
                    f"{jpath}: duplicate case id {c.id!r} in '{key}' (also in '{seen[c.id]}'); file names must be unique"
                )
            seen[c.id] = key
        return cls(root=root, labels=labels, cases=cases, test_cases=test_cases, name=str(meta.get("name", root.name)))


def parse_labels(raw: Any, jpath: Path) -> dict[int, str]:
    """``{"0": "background", ...}`` or the inverse ``{"background": 0, ...}`` -> {0: "background", ...}."""
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{jpath}: key 'labels' must be a mapping like {{\"0\": \"background\", \"1\": \"organ\"}}")
    try:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in raw.values()):
            labels = {int(v): str(k) for k, v in raw.items()}  # nnU-Net v2: name -> value
        else:
            labels = {int(k): str(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        raise DataError(f"{jpath}: key 'labels' must map class indices to names, e.g. {{\"0\": \"background\"}}") from None
    if sorted(labels) != list(range(len(labels))):
        raise DataError(f"{jpath}: key 'labels' must use the indices 0..K-1 without gaps, got {sorted(labels)}")
    return dict(sorted(labels.items()))


def read_labels(path: str | Path) -> dict[int, str]:
    """Only the ``labels`` of a ``dataset.json`` (``path``: the file or its folder); no file checks."""
    jpath = Path(path)
    jpath = jpath / "dataset.json" if jpath.is_dir() else jpath
    if not jpath.is_file():
        raise DataError(f"{jpath}: dataset.json not found; pass the dataset folder or its dataset.json")
    try:
        meta = json.loads(jpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{jpath}: not valid JSON ({e}); fix the syntax") from None
    return parse_labels(meta.get("labels") if isinstance(meta, dict) else None, jpath)


def case_id_of(path: str | Path) -> str:
    """File name without extension(s): ``imagesTr/x.nii.gz`` -> ``x``."""
    return split_suffix(path)[0]


def _resolve(p: str, root: Path) -> Path:
    q = Path(p)
    return q if q.is_absolute() else (root / q)


def _parse_entry(e: Any, i: int, key: str, root: Path, jpath: Path, need_label: bool) -> CaseRef:
    if isinstance(e, str) and not need_label:
        e = {"image": e}
    if not isinstance(e, dict) or not isinstance(e.get("image"), str):
        raise DataError(f"{jpath}: key '{key}[{i}]' must be an object with an 'image' path (got {e!r})")
    lab = e.get("label")
    if need_label and not isinstance(lab, str):
        raise DataError(f"{jpath}: key '{key}[{i}]' needs a 'label' path (got {e!r})")
    if lab is not None and not isinstance(lab, str):
        raise DataError(f"{jpath}: key '{key}[{i}].label' must be a path string (got {lab!r})")
    image = _resolve(e["image"], root)
    label = _resolve(lab, root) if lab is not None else None
    for sub, p in (("image", image), ("label", label)):
        if p is not None and not (p.is_file() or (sub == "image" and p.is_dir())):  # a folder: a DICOM series
            raise DataError(f"{jpath}: key '{key}[{i}].{sub}' names {p}, which does not exist; fix the path or add the file")
    sp = e.get("spacing")
    if sp is not None:
        ok = isinstance(sp, list) and sp and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in sp)
        if not ok:
            raise DataError(f"{jpath}: key '{key}[{i}].spacing' must be a list of positive mm values (got {sp!r})")
        sp = tuple(float(v) for v in sp)
    return CaseRef(case_id_of(image), image, label, sp)


def _file_ndim(path: Path) -> int:
    suffix = split_suffix(path)[1]
    if suffix == ".png":
        return 2
    if suffix in (".nii", ".nii.gz"):
        import nibabel as nib

        try:
            shape = nib.load(str(path)).shape
        except Exception as e:  # noqa: BLE001  any nibabel failure is a bad file
            raise DataError(f"{path}: cannot read the NIfTI header ({e}); re-export the file") from None
        if len(shape) == 4 and shape[3] == 1:
            shape = shape[:3]
        if len(shape) not in (2, 3):
            raise DataError(
                f"{path}: image is {len(shape)}D with shape {tuple(shape)}; uncol takes one channel, so pass a "
                "2D/3D file (split multi-channel or time series files into one file per channel)"
            )
        return len(shape)
    return read_image(path).ndim


def _pattern_regex(pattern: str, what: str) -> re.Pattern[str]:
    if pattern.count("{stem}") != 1:
        raise DataError(f"{what} pattern {pattern!r} must contain '{{stem}}' exactly once, e.g. '{{stem}}_mask'")
    head, tail = pattern.split("{stem}")
    return re.compile(f"^{re.escape(head)}(?P<stem>.+?){re.escape(tail)}$")


def _list_by_stem(folder: Path, pattern: str, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: {what} folder not found; pass an existing folder")
    rx = _pattern_regex(pattern, what)
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        base, suffix = split_suffix(p)
        if p.is_dir() and not p.name.startswith(".") and is_dicom_series(p):
            base, suffix = p.name, "dicom"  # a DICOM series folder is one image
        if not suffix or not (p.is_file() or suffix == "dicom") or p.name.startswith("."):
            continue
        m = rx.match(base)
        if m is None:
            continue
        stem = m.group("stem")
        if stem in found:
            raise DataError(f"{p}: two {what} files have the stem {stem!r} ({found[stem].name}); keep one")
        found[stem] = p
    if not found:
        raise DataError(f"{folder}: no {what} files matching {pattern!r} with a suffix in {', '.join(SUFFIXES)}")
    return found


def _check_pairs(imgs: dict[str, Path], labs: dict[str, Path], labels: dict[int, str] | None,
                 spacing_csv: str | Path | None) -> tuple[set[int], set[int], dict[str, list[float]]]:
    """Read every pair (readable, finite, same shape, integer labels): (label values, ndims, CSV spacings)."""
    values: set[int] = set()
    ndims: set[int] = set()
    table = read_spacing_csv(spacing_csv) if spacing_csv is not None else None
    spacings: dict[str, list[float]] = {}
    for stem in sorted(imgs):
        image, label = read_image(imgs[stem]), read_label(labs[stem])
        check_pair(image, label)
        ndims.add(image.ndim)
        if table is not None:
            spacings[stem] = list(spacing_for(table, case_id_of(imgs[stem]), image.ndim, spacing_csv))
        found = {int(v) for v in np.unique(label.array)}
        if labels is not None and max(found) >= len(labels):
            raise DataError(f"{label.path}: label value {max(found)} is not among the declared classes 0..{len(labels) - 1}")
        values |= found
    return values, ndims, spacings


def _pair_by_stem(images_dir: Path, labels_dir: Path, pattern: str,
                  label_pattern: str) -> tuple[dict[str, Path], dict[str, Path]]:
    """Images and labels by shared stem; an image without a label (or the reverse) is a ``DataError``."""
    imgs = _list_by_stem(images_dir, pattern, "image")
    labs = _list_by_stem(labels_dir, label_pattern, "label")
    missing = sorted(set(imgs) - set(labs))
    if missing:
        raise DataError(
            f"{imgs[missing[0]]}: no label named {label_pattern.format(stem=missing[0])}.* in {labels_dir} "
            f"({len(missing)} images lack one); add the labels or fix --label-pattern"
        )
    orphans = sorted(set(labs) - set(imgs))
    if orphans:
        raise DataError(
            f"{labs[orphans[0]]}: no image named {pattern.format(stem=orphans[0])}.* in {images_dir} "
            f"({len(orphans)} labels lack one); remove them or fix --pattern"
        )
    return imgs, labs


def import_folder(
    images_dir: str | Path,
    labels_dir: str | Path,
    out_dir: str | Path,
    pattern: str = "{stem}",
    label_pattern: str = "{stem}",
    labels: dict[int, str] | None = None,
    label_suffix: str | None = None,
    spacing_csv: str | Path | None = None,
) -> DatasetSpec:
    """Write ``out_dir/dataset.json`` for two folders of images and labels matched by stem.

    ``pattern`` / ``label_pattern``: the file name (without extension) of an image / a label with
    ``{stem}`` where the shared part goes; HC18's ``000_HC.png`` + ``000_HC_mask.png`` is
    ``label_pattern="{stem}_mask"``. The case id is the image file name without extension. Every pair is read and checked
    (readable, finite, same shape, integer labels) before anything is written; an image without a
    label or a label without an image is an error. ``labels`` {index: name} default to the values
    found (0 "background", v "class_v"), which must then be 0..K-1 without gaps.
    ``label_suffix="_mask"`` is shorthand for ``label_pattern="{stem}_mask"``.
    Paths are written relative to ``out_dir`` when the files lie under it, else absolute.
    ``spacing_csv``: per-image pixel sizes (see :mod:`uncol.data.spacing`; HC18's own
    ``training_set_pixel_size_and_HC.csv`` works), written as each entry's ``"spacing"`` (torch
    order, mm); every image must have a row. Without it PNG distances are reported in pixels.
    """
    if label_suffix:
        label_pattern = "{stem}" + label_suffix
    images_dir, labels_dir, out_dir = Path(images_dir), Path(labels_dir), Path(out_dir)
    imgs, labs = _pair_by_stem(images_dir, labels_dir, pattern, label_pattern)
    values, ndims, spacings = _check_pairs(imgs, labs, labels, spacing_csv)
    if labels is None:
        k = max(values) + 1
        if values != set(range(k)) or k < 2:
            raise DataError(
                f"{labels_dir}: label values found {sorted(values)} are not class indices 0..K-1 (K >= 2); "
                "remap them (e.g. 255 -> 1) or pass the class names explicitly"
            )
        labels = {v: ("background" if v == 0 else f"class_{v}") for v in range(k)}
    if len(ndims) > 1:
        raise DataError(f"{images_dir}: images mix 2D and 3D files; keep one kind per dataset")
    out_abs = out_dir.resolve()

    def rel(p: Path) -> str:
        ap = p.resolve()
        return "./" + os.path.relpath(ap, out_abs) if ap.is_relative_to(out_abs) else str(ap)

    meta = {
        "name": out_dir.name,
        "tensorImageSize": f"{ndims.pop()}D",
        "labels": {str(k): v for k, v in sorted(labels.items())},
        "numTraining": len(imgs),
        "numTest": 0,
        "training": [{"image": rel(imgs[s]), "label": rel(labs[s]), **({"spacing": spacings[s]} if s in spacings else {})}
                     for s in sorted(imgs)],
        "test": [],
    }
    from uncol.runtime import atomic_write_json

    atomic_write_json(out_dir / "dataset.json", meta)
    return DatasetSpec.load(out_dir)
