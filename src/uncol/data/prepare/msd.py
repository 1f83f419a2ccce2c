"""Any Medical Segmentation Decathlon task folder as distributed (dataset.json, imagesTr, labelsTr[, imagesTs]).

The task folder is checked, not converted: dataset.json parses and has ``labels`` and ``training``;
every training pair exists; ``numTraining`` matches; each label has the image's spatial shape (the
image may have a 4th, modality axis) and only values listed in ``labels``. OUT then gets the checked
``dataset.json``, ``imagesTr``/``labelsTr``/``imagesTs`` as symlinks to RAW (``link="symlink"``, the
default, nothing copied) or copies (``link="copy"``), five trials of 7:1:2 split files and
``prepare_info.json``. RAW itself is never written to.

Archives (MONAI's mirror; md5 as in MONAI ``monai/apps/datasets.py`` DecathlonDataset):
``https://msd-for-monai.s3-us-west-2.amazonaws.com/<Task>.tar``. The macOS ``._*`` files packed in
those archives are ignored. Licence: CC BY-SA 4.0 (medicaldecathlon.com).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from uncol import __version__
from uncol.data.prepare.common import (
    PREPARERS,
    as_label,
    check_label_values,
    nifti_errors,
    short_list,
    staged_output,
    trial_splits,
    write_info,
    write_split_files,
)
from uncol.data.prepare.download import download as fetch
from uncol.data.prepare.download import extract_tar
from uncol.errors import ConfigError, DataError
from uncol.runtime import atomic_write_json

MIRROR = "https://msd-for-monai.s3-us-west-2.amazonaws.com/{task}.tar"
MD5 = {
    "Task01_BrainTumour": "240a19d752f0d9e9101544901065d872",
    "Task02_Heart": "06ee59366e1e5124267b774dbd654057",
    "Task03_Liver": "a90ec6c4aa7f6a3d087205e23d4e6397",
    "Task04_Hippocampus": "9d24dba78a72977dbd1d2e110310f31b",
    "Task05_Prostate": "35138f08b1efaef89d7424d2bcc928db",
    "Task06_Lung": "8afd997733c7fc0432f71255ba4e52dc",
    "Task07_Pancreas": "4f7080cfca169fa8066d17ce6eb061e4",
    "Task08_HepaticVessel": "641d79e80ec66453921d997fbf12a29c",
    "Task09_Spleen": "410d4a301da4e5b2f6f86ec3ddba524e",
    "Task10_Colon": "bad7a188931dc2f6acf72b08eb6202d0",
}


def _case(entry_path: str) -> str:
    name = Path(entry_path).name
    return name[:-7] if name.endswith(".nii.gz") else Path(name).stem


def check_task(root: Path, check_values: bool = True) -> tuple[dict, dict[str, dict]]:
    """Validate an MSD task folder -> (dataset.json content, per-case info). DataError on any problem."""
    import nibabel as nib

    meta_path = root / "dataset.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise DataError(f"{meta_path} is missing; pass an MSD task folder (dataset.json, imagesTr, labelsTr) as --raw") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{meta_path} is not valid JSON ({exc}); restore it from the task archive") from None
    for key in ("labels", "training"):
        if key not in meta:
            raise DataError(f"{meta_path} has no '{key}' entry; restore it from the task archive")
    try:
        allowed = sorted(int(k) for k in meta["labels"])
    except ValueError:
        raise DataError(f"{meta_path}: 'labels' keys must be integers as strings, e.g. {{\"0\": \"background\"}}") from None
    training = meta["training"]
    missing = [e[k] for e in training for k in ("image", "label") if not (root / e[k]).is_file()]
    if missing:
        raise DataError(f"{len(missing)} file(s) listed in {meta_path} are missing: {short_list(missing)}; re-extract the task")
    n_listed = meta.get("numTraining", len(training))
    if n_listed != len(training):
        raise DataError(f"{meta_path}: numTraining is {n_listed} but 'training' lists {len(training)} pairs; fix dataset.json")
    cases: dict[str, dict] = {}
    for e in training:
        img_path, lab_path = root / e["image"], root / e["label"]
        try:
            img_shape = nib.load(str(img_path)).shape
            lab_img = nib.load(str(lab_path))
        except nifti_errors() as exc:
            raise DataError(f"{img_path} or {lab_path} is not readable NIfTI ({exc}); re-extract the task") from None
        if tuple(lab_img.shape) != tuple(img_shape[: len(lab_img.shape)]):
            raise DataError(f"{lab_path} has shape {lab_img.shape} but {img_path.name} has {img_shape}; they must match")
        if check_values:
            check_label_values(as_label(np.asarray(lab_img.dataobj), lab_path), allowed, lab_path)
        cases[_case(e["image"])] = {"image_shape": img_shape, "label_shape": lab_img.shape}
    return meta, cases


def find_task(raw_dir: Path) -> Path:
    if (raw_dir / "dataset.json").is_file():
        return raw_dir
    subs = [d for d in raw_dir.iterdir() if d.is_dir() and (d / "dataset.json").is_file()] if raw_dir.is_dir() else []
    if len(subs) == 1:
        return subs[0]
    raise DataError(f"no MSD dataset.json in {raw_dir}; pass the task folder (e.g. Task04_Hippocampus) as --raw")


@PREPARERS.register("msd")
def prepare_msd(raw_dir: Path, out_dir: Path, *, download: bool = False, seed: int = 0, task: str = "",
                link: str = "symlink", check_values: bool = True, n_trials: int = 5,
                labeled_fractions: tuple[float, ...] = (0.10, 0.20), overwrite: bool = False) -> Path:
    """Check an MSD task folder and write OUT (see module docstring). ``task`` is needed for --download."""
    raw_dir = Path(raw_dir)
    if link not in ("symlink", "copy"):
        raise ConfigError(f"link={link!r}; use 'symlink' or 'copy'")
    if download:
        if task not in MD5:
            raise ConfigError(f"--download needs task= one of {', '.join(MD5)}; got {task!r}")
        extract_tar(fetch(MIRROR.format(task=task), raw_dir / f"{task}.tar", md5=MD5[task]), raw_dir)
        raw_dir = raw_dir / task
    root = find_task(raw_dir).resolve()
    if Path(out_dir).absolute().resolve() == root:
        raise DataError(f"--out {out_dir} is the task folder itself; choose a new folder (RAW is never written to)")
    meta, cases = check_task(root, check_values)
    ids = sorted(cases)
    with staged_output(out_dir, overwrite) as tmp:
        for sub in ("imagesTr", "labelsTr", "imagesTs"):
            if (root / sub).is_dir():
                if link == "symlink":
                    os.symlink(root / sub, tmp / sub, target_is_directory=True)
                else:
                    shutil.copytree(root / sub, tmp / sub, ignore=shutil.ignore_patterns("._*"))
        atomic_write_json(tmp / "dataset.json", meta)
        files = write_split_files(tmp, trial_splits(ids, seed, n_trials),
                                  {round(f * 100, 2): float(f) for f in labeled_fractions},
                                  {"seed": seed, "made_by": "uncol data prepare msd"})
        write_info(tmp, {"preparer": "msd", "uncol_version": __version__, "seed": seed,
                         "options": {"task": task, "link": link, "check_values": check_values,
                                     "n_trials": n_trials, "labeled_fractions": labeled_fractions},
                         "source": {"raw_dir": str(root)}, "checked": True, "split_files": files, "cases": cases})
    return Path(out_dir)
