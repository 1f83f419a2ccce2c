"""uncol.data.datasets: modes whole / patch / slices, eval cases and size helpers."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from uncol.config import DataConfig
from uncol.data.dataset import DatasetSpec
from uncol.data.datasets import (
    SegmentationDataset,
    from_model_size,
    load_case,
    slices_to_volume,
    to_model_size,
    volume_to_slices,
)
from uncol.errors import ConfigError, DataError

SHAPES_XYZ = [(6, 8, 10), (6, 9, 7), (5, 8, 9)]


def make_3d(root: Path, max_label: int = 2) -> DatasetSpec:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    training = []
    for i, shape in enumerate(SHAPES_XYZ):
        lab = np.zeros(shape, np.uint8)
        lab[1:4, 2:5, 2:6] = 1
        lab[0, 0, 0] = max_label
        img = rng.normal(100, 10, shape).astype(np.float32) + 50 * lab
        aff = np.diag([1.0, 1.5, 2.0, 1.0])
        nib.save(nib.Nifti1Image(img, aff), str(root / "imagesTr" / f"v{i}.nii.gz"))
        nib.save(nib.Nifti1Image(lab, aff), str(root / "labelsTr" / f"v{i}.nii.gz"))
        training.append({"image": f"./imagesTr/v{i}.nii.gz", "label": f"./labelsTr/v{i}.nii.gz"})
    meta = {"labels": {"0": "background", "1": "a", "2": "b"}, "training": training}
    (root / "dataset.json").write_text(json.dumps(meta))
    return DatasetSpec.load(root)


@pytest.fixture
def spec3d(tmp_path: Path) -> DatasetSpec:
    return make_3d(tmp_path / "ds")


CFG3 = DataConfig(spatial_dims=3, mode="whole", size=(8, 8, 8))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slices_mode_serves_every_slice(spec3d: DatasetSpec, axis: int) -> None:
    cfg = DataConfig(spatial_dims=2, mode="slices", size=(16, 16), slice_axis=axis)
    ds = SegmentationDataset(spec3d, spec3d.case_ids, cfg, train=True, labeled=True)
    assert len(ds) == sum(s[::-1][axis] for s in SHAPES_XYZ)  # torch order (z, y, x)
    s = ds[len(ds) - 1]
    assert s["image"].shape == (1, 16, 16) and s["label"].shape == (16, 16) and s["label"].dtype == torch.int64
    assert s["case"] == "v2" and s["spacing"].shape == (2,) and s["spacing"].dtype == torch.float64
    assert ds.slice_of(len(ds) - 1) == ("v2", SHAPES_XYZ[2][::-1][axis] - 1)


def test_whole_mode_resizes_once_and_scales_spacing(spec3d: DatasetSpec) -> None:
    ds = SegmentationDataset(spec3d, ["v0", "v1"], CFG3, train=False, labeled=True)
    assert ds.images[0].shape == (1, 8, 8, 8)
    s = ds[0]
    assert s["image"].shape == (1, 8, 8, 8) and s["label"].shape == (8, 8, 8)
    # native (z, y, x) = (10, 8, 6) with spacing (2, 1.5, 1)
    torch.testing.assert_close(s["spacing"], torch.tensor([2 * 10 / 8, 1.5, 6 / 8], dtype=torch.float64))
    assert abs(float(ds.get_seeded(0, 0)["image"].mean())) < 0.5  # z-scored
    assert set(s["label"].unique().tolist()) <= {0, 1, 2}


def test_patch_mode_and_unlabelled(spec3d: DatasetSpec) -> None:
    cfg = replace(CFG3, mode="patch", size=(4, 6, 12))
    ds = SegmentationDataset(spec3d, spec3d.case_ids, cfg, train=True, labeled=False)
    s = ds.get_seeded(1, 7)
    assert s["image"].shape == (1, 4, 6, 12) and "label" not in s
    assert torch.equal(s["image"], ds.get_seeded(1, 7)["image"])
    assert SegmentationDataset(spec3d, ["v0"], cfg, train=False, labeled=True)[0]["label"].shape == (4, 6, 12)


def test_label_outside_declared_classes(tmp_path: Path) -> None:
    spec = make_3d(tmp_path / "ds", max_label=3)
    with pytest.raises(DataError, match=r"v0.nii.gz: label value 3 is outside the classes 0..2 declared in .*dataset.json"):
        SegmentationDataset(spec, ["v0"], CFG3, train=True, labeled=True)


def test_dims_mismatch_is_config_error(spec3d: DatasetSpec) -> None:
    with pytest.raises(ConfigError, match="data.spatial_dims"):
        SegmentationDataset(spec3d, ["v0"], DataConfig(spatial_dims=2, size=(8, 8)), train=True, labeled=True)


def test_load_case_native_and_size_helpers(spec3d: DatasetSpec) -> None:
    ev = load_case(spec3d, "v1", CFG3)
    assert ev.image.shape == (1, 7, 9, 6) and ev.label.shape == (7, 9, 6) and ev.spacing == (2.0, 1.5, 1.0)
    assert ev.volume is ev.ref and ev.ref.path.name == "v1.nii.gz"
    x = to_model_size(ev.image[None], CFG3)
    assert x.shape == (1, 1, 8, 8, 8)
    assert from_model_size(torch.rand(1, 3, 8, 8, 8), ev.label.shape).shape == (1, 3, 7, 9, 6)
    for axis in range(3):
        sl = volume_to_slices(ev.image, axis)
        assert sl.shape[0] == ev.image.shape[1 + axis] and sl.shape[1] == 1
        torch.testing.assert_close(slices_to_volume(sl, axis, ev.image.shape[1:]), ev.image)
        assert volume_to_slices(ev.image, axis, (16, 16)).shape[-2:] == (16, 16)


def test_png_dataset_whole_mode(tmp_path: Path) -> None:
    (tmp_path / "im").mkdir()
    training = []
    for i in range(2):
        Image.fromarray((np.arange(30 * 40).reshape(30, 40) % 200).astype(np.uint8)).save(tmp_path / "im" / f"{i}.png")
        m = np.zeros((30, 40), np.uint8)
        m[10:20, 10:30] = 1
        Image.fromarray(m).save(tmp_path / "im" / f"{i}_mask.png")
        training.append({"image": f"im/{i}.png", "label": f"im/{i}_mask.png"})
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"0": "bg", "1": "fg"}, "training": training}))
    spec = DatasetSpec.load(tmp_path)
    cfg = DataConfig(spatial_dims=2, mode="whole", size=(15, 20), png_spacing=0.5)
    s = SegmentationDataset(spec, ["0", "1"], cfg, train=True, labeled=True).get_seeded(1, 3)
    assert s["image"].shape == (1, 15, 20) and s["label"].sum() > 0
    torch.testing.assert_close(s["spacing"], torch.tensor([1.0, 1.0], dtype=torch.float64))


def test_real_hippocampus_slices(shared_data: Path) -> None:
    spec = DatasetSpec.load(shared_data / "msd_task04_hippocampus")
    assert spec.num_classes == 3 and len(spec.cases) == 200 and spec.ndim == 3
    cfg = DataConfig(spatial_dims=2, mode="slices", size=(64, 64), slice_axis=0)
    ds = SegmentationDataset(spec, spec.case_ids[:3], cfg, train=True, labeled=True)
    ev = [load_case(spec, c, cfg) for c in spec.case_ids[:3]]
    assert len(ds) == sum(e.image.shape[1] for e in ev)
    assert set(np.unique(ev[0].label).tolist()) == {0, 1, 2}


def test_loader_resume_reproduces_augmented_samples(spec3d: DatasetSpec) -> None:
    from uncol.data.sampler import TwoStreamLoader

    cfg = DataConfig(spatial_dims=2, mode="slices", size=(12, 12), slice_axis=0)
    lab = SegmentationDataset(spec3d, ["v0", "v1"], cfg, train=True, labeled=True)
    unl = SegmentationDataset(spec3d, ["v2"], cfg, train=True, labeled=False)
    ref = TwoStreamLoader(lab, unl, 4, 2, seed=0)
    first = [next(ref) for _ in range(3)]
    run = TwoStreamLoader(lab, unl, 4, 2, seed=0)
    next(run)
    again = TwoStreamLoader(lab, unl, 4, 2, seed=0)
    again.load_state_dict(run.state_dict())
    for want in first[1:]:
        got = next(again)
        assert torch.equal(got.labeled["image"], want.labeled["image"])
        assert torch.equal(got.labeled["label"], want.labeled["label"])
        assert torch.equal(got.unlabeled["image"], want.unlabeled["image"])


def test_whole_mode_pad_serves_the_aspect_kept_image_and_predict_maps_back(tmp_path) -> None:
    import json

    import numpy as np
    import torch
    from PIL import Image

    from uncol.config import AugmentConfig, Config, DataConfig
    from uncol.data.dataset import DatasetSpec
    from uncol.data.datasets import SegmentationDataset
    from uncol.errors import ConfigError
    from uncol.eval.inference import predict_probs

    (tmp_path / "im").mkdir()
    img = np.zeros((20, 40), np.uint8)
    img[5:15, 10:30] = 200
    Image.fromarray(img).save(tmp_path / "im" / "a.png")
    Image.fromarray((img > 0).astype(np.uint8)).save(tmp_path / "im" / "a_m.png")
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"0": "bg", "1": "fg"}, "training": [
        {"image": "im/a.png", "label": "im/a_m.png", "spacing": [0.5, 0.5]}]}))
    spec = DatasetSpec.load(tmp_path)
    cfg = DataConfig(size=(16, 16), resize="pad", normalize="none", augment=AugmentConfig(enabled=False))
    s = SegmentationDataset(spec, ["a"], cfg, train=False, labeled=True)[0]
    assert s["label"][:4].sum() == 0 and s["label"][12:].sum() == 0 and s["label"][6:10, 4:12].all()
    assert s["spacing"].tolist() == pytest.approx([1.25, 1.25])  # one scale for both axes
    with pytest.raises(ConfigError, match="data.resize"):
        SegmentationDataset(spec, ["a"], DataConfig(size=(16, 16), resize="crop"), train=False, labeled=True)

    class Copy(torch.nn.Module):  # logits = (1 - x, x): predicts the bright block wherever it is
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([1 - x / 200, x / 200], 1) * 10

    probs = predict_probs(Copy(), torch.from_numpy(img.astype(np.float32))[None], Config(data=cfg), torch.device("cpu"))
    assert probs.shape == (2, 20, 40) and (probs.argmax(0).numpy() == (img > 0)).mean() > 0.98
