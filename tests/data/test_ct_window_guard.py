"""A CT window applied to data already scaled to [0, 1] is refused (the ImageTBAD config bug, issue 14)."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from uncol.config import DataConfig, load_config
from uncol.data.dataset import DatasetSpec
from uncol.data.datasets import SegmentationDataset
from uncol.data.transforms import normalize
from uncol.errors import DataError

ROOT = Path(__file__).resolve().parents[2]


def _dataset(root: Path) -> DatasetSpec:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    img = rng.uniform(0.0, 1.0, (12, 12, 12)).astype(np.float32)  # as `data prepare imagetbad` writes it
    lab = np.zeros((12, 12, 12), np.uint8)
    lab[3:8, 3:8, 3:8] = 1
    nib.save(nib.Nifti1Image(img, np.eye(4)), str(root / "imagesTr" / "c0.nii.gz"))
    nib.save(nib.Nifti1Image(lab, np.eye(4)), str(root / "labelsTr" / "c0.nii.gz"))
    (root / "dataset.json").write_text(json.dumps({
        "labels": {"0": "background", "1": "lumen"},
        "training": [{"image": "./imagesTr/c0.nii.gz", "label": "./labelsTr/c0.nii.gz"}]}))
    return DatasetSpec.load(root)


def test_ct_window_on_unit_range_volume_is_refused_naming_the_file(tmp_path: Path) -> None:
    spec = _dataset(tmp_path / "d")
    cfg = DataConfig(root=str(spec.root), spatial_dims=3, size=(8, 8, 8), normalize="ct")
    with pytest.raises(DataError, match=r"c0\.nii\.gz: intensities are already in \[0, 1\].*data.normalize: none"):
        SegmentationDataset(spec, ["c0"], cfg, train=False, labeled=True)
    # the same volume with normalize none is read unchanged
    ds = SegmentationDataset(spec, ["c0"], DataConfig(root=str(spec.root), spatial_dims=3, size=(12, 12, 12),
                                                      normalize="none"), train=False, labeled=True)
    x = ds[0]["image"]
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0 and float(x.std()) > 0.2


def test_ct_window_still_applies_to_hounsfield_units() -> None:
    hu = np.array([-1000.0, -125.0, 75.0, 275.0, 2000.0], np.float32)
    np.testing.assert_allclose(normalize(hu, DataConfig(normalize="ct")), [0.0, 0.0, 0.5, 1.0, 1.0])


def test_paper_imagetbad_config_does_not_window_prepared_data() -> None:
    cfg = load_config(ROOT / "configs" / "paper" / "imagetbad3d.yaml", [])
    assert cfg.data.normalize == "none"
