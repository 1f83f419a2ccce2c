"""ImageTBAD (type-B aortic dissection CTA) -> true lumen / false lumen, 1 mm isotropic, resized cube.

Release (github.com/XiaoweiXu/Dataset_Type-B-Aortic-Dissection, distributed through Kaggle since
2023-11): 100 pre-operative CTA volumes ``<n>_image.nii.gz`` with labels ``<n>_label.nii.gz``;
label values 0 background, 1 true lumen (TL), 2 false lumen (FL), 3 false-lumen thrombus (FLT)
(value meanings as read in VivienLu/UPCoL ``codes/preprocess/TBAD_preprocess.py`` @ a29143d7, whose
code UnCoL credits; 68 of the 100 scans contain FLT per the release README).

The paper segments TL and FL only, so the thrombus must be folded into another class. Option
``thrombus``: ``"background"`` (default) does what UPCoL's TBAD_preprocess.py does (``label[label == 3]
= 0``); ``"false_lumen"`` merges it into FL instead (thrombosed false lumen counted as false lumen).

Preprocessing: resample to 1 mm isotropic from the header spacing (image linear, label nearest; UPCoL
uses the in-plane spacing for all three axes, we use the true one), clip to [-401.5, 928.5] HU and
scale to [0, 1] (UPCoL's clip_range and min-max ``normalize``), resize to ``size``^3 (128 by default,
the input of SAM-Med3D; image trilinear, label nearest). Five trials of 7:1:2, 10 % / 20 % labelled.
Output classes keep the release order: 1 true lumen, 2 false lumen.
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
    load_nifti,
    require_count,
    resample_shape,
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
from uncol.errors import ConfigError, DataError

N_CASES = 100
CLIP_HU = (-401.5, 928.5)
RAW_LABELS = {0: "background", 1: "true lumen", 2: "false lumen", 3: "false lumen thrombus"}
THROMBUS_TO = {"background": 0, "false_lumen": 2}


def _index(raw_dir: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    images: dict[str, Path] = {}
    labels: dict[str, Path] = {}
    for dirpath, _, names in os.walk(raw_dir):
        for name in names:
            for suffix, table in (("_image.nii.gz", images), ("_label.nii.gz", labels)):
                if name.endswith(suffix) and not name.startswith("."):
                    table[name[: -len(suffix)]] = Path(dirpath) / name
    return images, labels


def case_id(key: str) -> str:
    return f"tbad_{int(key):03d}" if key.isdigit() else f"tbad_{key}"


def preprocess(image: np.ndarray, label: np.ndarray, affine: np.ndarray, size: int,
               clip: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, z) arrays -> 1 mm isotropic, clipped and scaled to [0, 1], resized to size^3."""
    shape = resample_shape(image.shape, spacing_of(affine, 3), (1.0, 1.0, 1.0))
    affine = resized_affine(affine, image.shape, shape)
    image = resize(image.astype(np.float32), shape, 1)
    label = resize(label.astype(np.uint8), shape, 0)
    lo, hi = clip
    image = (np.clip(image, lo, hi) - lo) / (hi - lo)
    cube = (size, size, size)
    affine = resized_affine(affine, shape, cube)
    return resize(image, cube, 1).astype(np.float32), resize(label, cube, 0).astype(np.uint8), affine


@PREPARERS.register("imagetbad")
def prepare_imagetbad(raw_dir: Path, out_dir: Path, *, download: bool = False, seed: int = 0,
                      size: int = 128, thrombus: str = "background", clip: tuple[float, float] = CLIP_HU,
                      labeled_fractions: tuple[float, ...] = (0.10, 0.20), n_trials: int = 5,
                      allow_partial: bool = False, overwrite: bool = False) -> Path:
    """Prepare ImageTBAD; see the module docstring. Returns ``out_dir``."""
    raw_dir = Path(raw_dir)
    if thrombus not in THROMBUS_TO:
        raise ConfigError(f"thrombus={thrombus!r}; use one of {', '.join(THROMBUS_TO)}")
    if download:
        raise DataError("ImageTBAD is distributed through Kaggle (login needed): download it from "
                        "https://www.kaggle.com/xiaoweixumedicalai/datasets and pass the unpacked folder as --raw")
    if not raw_dir.is_dir():
        raise DataError(f"{raw_dir} is not a folder; pass the unpacked ImageTBAD release as --raw")
    images, labels = _index(raw_dir)
    orphans = sorted({f"{k}_label.nii.gz" for k in images if k not in labels}
                     | {f"{k}_image.nii.gz" for k in labels if k not in images})
    if orphans:
        raise DataError(f"unpaired files under {raw_dir}, missing: {short_list(orphans)}; re-extract the release")
    keys = sorted(images, key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
    require_count(keys, N_CASES, "ImageTBAD cases (<n>_image/<n>_label.nii.gz)", raw_dir, allow_partial)

    cases = {}
    with staged_output(out_dir, overwrite) as tmp:
        for key in keys:
            img, affine = load_nifti(images[key])
            lab, _ = load_nifti(labels[key])
            lab = as_label(lab, labels[key])
            if img.shape != lab.shape:
                raise DataError(f"{images[key]} has shape {img.shape} but its label {lab.shape}; they must match")
            check_label_values(lab, tuple(RAW_LABELS), labels[key])
            n_thrombus, raw_shape = int((lab == 3).sum()), img.shape
            lab[lab == 3] = THROMBUS_TO[thrombus]
            img, lab, aff = preprocess(img, lab, affine, size, clip)
            cid = case_id(key)
            save_nifti(tmp / "imagesTr" / f"{cid}.nii.gz", img, aff)
            save_nifti(tmp / "labelsTr" / f"{cid}.nii.gz", lab, aff)
            cases[cid] = {"source": str(images[key]), "raw_shape": raw_shape,
                          "raw_spacing": spacing_of(affine, 3), "shape": img.shape,
                          "spacing": spacing_of(aff, 3), "thrombus_voxels": n_thrombus}
        ids = list(cases)
        write_dataset_json(tmp, name="ImageTBAD", description="type-B aortic dissection CTA: true and false lumen",
                           labels={0: "background", 1: "true lumen", 2: "false lumen"}, case_ids=ids, ndim=3,
                           modality="CT", reference="Yao et al. 2021, Front. Physiol. 12:732711 (ImageTBAD)",
                           licence="see the ImageTBAD release (github.com/XiaoweiXu/Dataset_Type-B-Aortic-Dissection)")
        trials = trial_splits(ids, seed, n_trials)
        files = write_split_files(tmp, trials, {round(f * 100, 2): float(f) for f in labeled_fractions},
                                  {"seed": seed, "made_by": "uncol data prepare imagetbad"})
        write_info(tmp, {"preparer": "imagetbad", "uncol_version": __version__, "seed": seed,
                         "options": {"size": size, "thrombus": thrombus, "clip": clip, "n_trials": n_trials,
                                     "labeled_fractions": labeled_fractions, "allow_partial": allow_partial},
                         "source": {"raw_dir": str(raw_dir.absolute())}, "raw_labels": RAW_LABELS,
                         "thrombus_mapped_to": THROMBUS_TO[thrombus], "split_files": files, "cases": cases})
    return Path(out_dir)
