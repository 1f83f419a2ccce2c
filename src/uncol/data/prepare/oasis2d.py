"""OASIS 2D (neurite-oasis 2D slice release) -> 4 classes: left/right thalamus, left/right hippocampus.

Release (README: github.com/adalca/medical-datasets, ``neurite-oasis.md``): 414 OASIS-1 subjects,
one folder each, ``OASIS_OAS1_XXXX_MR1/slice_norm.nii.gz`` (160 x 192, skull-stripped, bias-corrected,
aligned to FreeSurfer's talairach space, coronal slice 109, intensities scaled to [0, 1]),
``slice_seg24.nii.gz`` (24-structure label map), ``slice_seg4.nii.gz`` (tissue types), the subject list
``subjects.txt`` and the label tables ``seg24_labels.txt`` / ``seg4_labels.txt`` in FreeSurfer
colour-table format (``index name R G B A``) at the release root.
2D-only archive: https://surfer.nmr.mgh.harvard.edu/ftp/data/neurite/data/neurite-oasis.2d.v1.0.tar,
md5 c9ae5864f250c7e4b8d83a104e51ae8e (as published in that README).

Protocol (paper, SPEC §6): slices resized to 256 x 256 (image bilinear, label nearest), five trials
of 7:1:2 train/val/test by subject, 5 % and 10 % of the training subjects labelled.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from uncol import __version__
from uncol.data.prepare.common import (
    PREPARERS,
    as_label,
    load_nifti,
    require_count,
    resize,
    resized_affine,
    save_nifti,
    short_list,
    spacing_of,
    staged_output,
    trial_splits,
    write_dataset_json,
    write_info,
    write_split_files,
)
from uncol.data.prepare.download import download as fetch
from uncol.data.prepare.download import extract_tar
from uncol.errors import DataError

URL = "https://surfer.nmr.mgh.harvard.edu/ftp/data/neurite/data/neurite-oasis.2d.v1.0.tar"
MD5 = "c9ae5864f250c7e4b8d83a104e51ae8e"
N_SUBJECTS = 414
SUBJECT_RE = re.compile(r"^OASIS_OAS1_\d{4}_MR\d$")

#: Output classes (index -> name) and the seg24 structure name(s) each comes from.
CLASSES: dict[int, tuple[str, tuple[str, ...]]] = {
    1: ("left thalamus", ("Left-Thalamus", "Left-Thalamus-Proper")),
    2: ("right thalamus", ("Right-Thalamus", "Right-Thalamus-Proper")),
    3: ("left hippocampus", ("Left-Hippocampus",)),
    4: ("right hippocampus", ("Right-Hippocampus",)),
}
#: Expected seg24 indices of those structures. NOT verified against a copy of seg24_labels.txt (none
#: was reachable when this was written): the indices are always read from the release's own
#: seg24_labels.txt by structure name, and a difference from this table is only reported (warning +
#: prepare_info.json), never used.
EXPECTED_SEG24: dict[int, int] = {1: 5, 2: 18, 3: 11, 4: 22}


def read_lut(path: Path) -> dict[str, int]:
    """FreeSurfer colour table -> {structure name: index}; '#' comments and blank lines skipped."""
    table: dict[str, int] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc}); it comes with the neurite-oasis release") from None
    for line in lines:
        parts = line.split("#", 1)[0].split()
        if len(parts) >= 2 and parts[0].isdigit():
            table[parts[1].rstrip("*")] = int(parts[0])
    if not table:
        raise DataError(f"{path} has no 'index name R G B A' rows; replace it with the release's file")
    return table


def seg24_mapping(lut_path: Path) -> dict[int, int]:
    """Output class -> seg24 index, looked up by name in ``lut_path``."""
    lut = {k.lower(): v for k, v in read_lut(lut_path).items()}
    mapping = {}
    for cls, (name, aliases) in CLASSES.items():
        hit = next((lut[a.lower()] for a in aliases if a.lower() in lut), None)
        if hit is None:
            raise DataError(f"{lut_path} has no row for {aliases[0]}; use the seg24_labels.txt of the neurite-oasis release")
        mapping[cls] = hit
    if mapping != EXPECTED_SEG24:
        warnings.warn(f"{lut_path}: seg24 indices {mapping} differ from the table in uncol "
                      f"({EXPECTED_SEG24}); using the file's", stacklevel=3)
    return mapping


def find_root(raw_dir: Path) -> Path:
    """The folder holding the subject folders: raw_dir itself or its single sub-folder."""
    def has_subjects(d: Path) -> bool:
        return any(SUBJECT_RE.match(p.name) for p in d.iterdir() if p.is_dir())

    if not raw_dir.is_dir():
        raise DataError(f"{raw_dir} is not a folder; pass the unpacked neurite-oasis 2D release as --raw (or use --download)")
    if has_subjects(raw_dir):
        return raw_dir
    subs = [d for d in raw_dir.iterdir() if d.is_dir() and has_subjects(d)]
    if len(subs) == 1:
        return subs[0]
    raise DataError(f"no OASIS_OAS1_XXXX_MR1 subject folders in {raw_dir}; unpack neurite-oasis.2d.v1.0.tar there "
                    "(or use --download)")


def _squeeze2d(a: np.ndarray, path: Path) -> np.ndarray:
    a = np.squeeze(a)
    if a.ndim != 2:
        raise DataError(f"{path} has shape {a.shape}, expected a 2D slice; use the 2D slice_* files")
    return a


def _write_case(src: Path, tmp: Path, sid: str, mapping: dict[int, int], lut_max: int, lut_name: str,
                size: int) -> dict[str, Any]:
    """Read one subject's slice and seg24 map, write the image and the class label resized to ``size``²."""
    img, aff = load_nifti(src / "slice_norm.nii.gz")
    seg, _ = load_nifti(src / "slice_seg24.nii.gz")
    img = _squeeze2d(img, src / "slice_norm.nii.gz").astype(np.float32)
    seg = as_label(_squeeze2d(seg, src / "slice_seg24.nii.gz"), src / "slice_seg24.nii.gz")
    if seg.shape != img.shape:
        raise DataError(f"{src}: slice_seg24 {seg.shape} and slice_norm {img.shape} differ; re-extract the subject")
    if seg.min() < 0 or seg.max() > lut_max:
        raise DataError(f"{src / 'slice_seg24.nii.gz'} has values outside 0..{lut_max} of {lut_name}")
    label = np.zeros(seg.shape, np.uint8)
    for cls, idx in mapping.items():
        label[seg == idx] = cls
    out_shape = (size, size)
    affine = resized_affine(aff, img.shape, out_shape)
    save_nifti(tmp / "imagesTr" / f"{sid}.nii.gz", resize(img, out_shape, 1).astype(np.float32), affine)
    save_nifti(tmp / "labelsTr" / f"{sid}.nii.gz", resize(label, out_shape, 0).astype(np.uint8), affine)
    return {"raw_shape": img.shape, "shape": out_shape, "spacing": spacing_of(affine, 2)}


@PREPARERS.register("oasis2d")
def prepare_oasis2d(raw_dir: Path, out_dir: Path, *, download: bool = False, seed: int = 0,
                    size: int = 256, labeled_fractions: tuple[float, ...] = (0.05, 0.10),
                    n_trials: int = 5, allow_partial: bool = False, overwrite: bool = False) -> Path:
    """Prepare the OASIS 2D slices; see the module docstring. Returns ``out_dir``."""
    raw_dir = Path(raw_dir)
    if download:
        archive = fetch(URL, raw_dir / Path(URL).name, md5=MD5)
        extract_tar(archive, raw_dir)
    root = find_root(raw_dir)
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and SUBJECT_RE.match(p.name))
    listed = (root / "subjects.txt").read_text().split() if (root / "subjects.txt").is_file() else []
    expected = listed or found
    missing = sorted(set(expected) - set(found))
    require_count([s for s in expected if s in found], len(listed) or N_SUBJECTS, "subject folders",
                  root, allow_partial, missing)
    subjects = [s for s in expected if s in found]
    need = [f"{s}/{f}" for s in subjects for f in ("slice_norm.nii.gz", "slice_seg24.nii.gz")
            if not (root / s / f).is_file()]
    if need:
        raise DataError(f"missing {len(need)} file(s) in {root}: {short_list(need)}; re-extract the release")
    lut_path = root / "seg24_labels.txt"
    if not lut_path.is_file():
        lut_path = root / subjects[0] / "seg24_labels.txt"
    if not lut_path.is_file():
        raise DataError(f"{root / 'seg24_labels.txt'} is missing; it ships at the root of the neurite-oasis release")
    mapping = seg24_mapping(lut_path)
    lut_max = max(read_lut(lut_path).values())

    with staged_output(out_dir, overwrite) as tmp:
        cases = {sid: _write_case(root / sid, tmp, sid, mapping, lut_max, lut_path.name, size) for sid in subjects}
        labels = {0: "background", **{c: n for c, (n, _) in CLASSES.items()}}
        write_dataset_json(tmp, name="OASIS2D", description="neurite-oasis 2D coronal slices: thalamus and hippocampus",
                           labels=labels, case_ids=subjects, ndim=2, modality="MRI",
                           reference="Marcus et al. 2007 (OASIS); Hoopes et al. 2022 (HyperMorph, neurite-oasis)",
                           licence="OASIS Data Use Agreement (oasis-brains.org)")
        trials = trial_splits(subjects, seed, n_trials)
        files = write_split_files(tmp, trials, {round(f * 100, 2): float(f) for f in labeled_fractions},
                                  {"seed": seed, "made_by": "uncol data prepare oasis2d"})
        write_info(tmp, {"preparer": "oasis2d", "uncol_version": __version__, "seed": seed,
                         "options": {"size": size, "labeled_fractions": labeled_fractions, "n_trials": n_trials,
                                     "allow_partial": allow_partial},
                         "source": {"raw_dir": str(root.absolute()), "url": URL, "md5": MD5},
                         "seg24_labels_file": str(lut_path), "seg24_index_of_class": mapping,
                         "seg24_expected_table": EXPECTED_SEG24, "split_files": files, "cases": cases})
    return Path(out_dir)
