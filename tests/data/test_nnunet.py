"""uncol.data.nnunet: an nnU-Net v2 raw folder (dataset.json with channel_names/file_ending) read as it is."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from uncol.data.dataset import DatasetSpec
from uncol.errors import DataError


def make_nnunet_v2(root: Path, ids: tuple[str, ...] = ("la_003", "la_007"), test: tuple[str, ...] = ("la_010",),
                   channels: dict | None = None) -> Path:
    """A fabricated Dataset001_Toy: imagesTr/{id}_0000.nii.gz, labelsTr/{id}.nii.gz, imagesTs/{id}_0000.nii.gz."""
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True)
    for i, cid in enumerate(ids):
        lab = np.zeros((6, 5, 4), np.uint8)
        lab[1:3, 1:4, 1:3] = 1 + i % 2
        img = nib.Nifti1Image(np.full((6, 5, 4), float(i), np.float32), np.eye(4))
        nib.save(img, str(root / "imagesTr" / f"{cid}_0000.nii.gz"))
        nib.save(nib.Nifti1Image(lab, np.eye(4)), str(root / "labelsTr" / f"{cid}.nii.gz"))
    for cid in test:
        nib.save(nib.Nifti1Image(np.zeros((6, 5, 4), np.float32), np.eye(4)), str(root / "imagesTs" / f"{cid}_0000.nii.gz"))
    meta = {"channel_names": channels or {"0": "MRI"}, "labels": {"background": 0, "left": 1, "right": 2},
            "numTraining": len(ids), "file_ending": ".nii.gz", "name": "Toy"}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_nnunet_v2_raw_folder_is_read_as_it_is(tmp_path: Path) -> None:
    root = make_nnunet_v2(tmp_path / "Dataset001_Toy")
    spec = DatasetSpec.load(root)
    assert spec.labels == {0: "background", 1: "left", 2: "right"} and spec.num_classes == 3
    assert spec.case_ids == ["la_003", "la_007"] and spec.ndim == 3
    assert spec.cases[1].image == root / "imagesTr" / "la_007_0000.nii.gz"
    assert spec.cases[1].label == root / "labelsTr" / "la_007.nii.gz"
    assert [(c.id, c.label) for c in spec.test_cases] == [("la_010", None)]


def test_nnunet_v2_explicit_dataset_key(tmp_path: Path) -> None:
    root = make_nnunet_v2(tmp_path / "ds", test=())
    meta = json.loads((root / "dataset.json").read_text())
    meta["dataset"] = {"a": {"images": ["imagesTr/la_007_0000.nii.gz"], "label": "labelsTr/la_007.nii.gz"}}
    (root / "dataset.json").write_text(json.dumps(meta))
    spec = DatasetSpec.load(root)
    assert spec.case_ids == ["a"] and spec.cases[0].label == root / "labelsTr" / "la_007.nii.gz"


def test_nnunet_v2_training_runs_through_the_dataset(tmp_path: Path) -> None:
    from uncol.config import DataConfig
    from uncol.data.datasets import SegmentationDataset

    spec = DatasetSpec.load(make_nnunet_v2(tmp_path / "ds"))
    ds = SegmentationDataset(spec, spec.case_ids, DataConfig(spatial_dims=3, size=(6, 5, 4), normalize="none"),
                             train=False, labeled=True)
    assert int(ds[1]["label"].max()) == 2 and ds[1]["case"] == "la_007"


@pytest.mark.parametrize("edit, words", [
    (lambda r, m: m.update(channel_names={"0": "T1", "1": "T2"}), "lists 2 channels"),
    (lambda r, m: (r / "imagesTr" / "la_003_0000.nii.gz").unlink(), "la_003_0000.nii.gz does not exist"),
    (lambda r, m: m.update(file_ending=".nrrd"), "no label files ending in '.nrrd'"),
    (lambda r, m: m.update(file_ending="nii.gz"), "'file_ending' must be a file suffix"),
])
def test_nnunet_v2_errors_name_the_file(tmp_path: Path, edit, words: str) -> None:
    root = make_nnunet_v2(tmp_path / "ds")
    meta = json.loads((root / "dataset.json").read_text())
    edit(root, meta)
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=words):
        DatasetSpec.load(root)
