"""uncol.data.dataset: dataset.json parsing, its errors, and import_folder."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from uncol.data.dataset import DatasetSpec, import_folder, read_labels
from uncol.errors import DataError


def make_msd(root: Path, n: int = 3, test: list | None = None, labels: dict | None = None) -> Path:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    training = []
    for i in range(n):
        for sub, arr in (("imagesTr", np.ones((4, 5, 6), np.float32)), ("labelsTr", np.zeros((4, 5, 6), np.uint8))):
            nib.save(nib.Nifti1Image(arr, np.eye(4)), str(root / sub / f"case_{i:03d}.nii.gz"))
        training.append({"image": f"./imagesTr/case_{i:03d}.nii.gz", "label": f"./labelsTr/case_{i:03d}.nii.gz"})
    meta = {"name": "toy", "labels": labels or {"0": "background", "1": "a", "2": "b"}, "training": training}
    if test is not None:
        meta["test"] = test
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_load_msd_style(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "ds", test=["./imagesTr/case_000.nii.gz".replace("000", "002")])
    meta = json.loads((root / "dataset.json").read_text())
    meta["training"] = meta["training"][:2]
    (root / "dataset.json").write_text(json.dumps(meta))
    spec = DatasetSpec.load(root)
    assert spec.labels == {0: "background", 1: "a", 2: "b"} and spec.num_classes == 3
    assert spec.case_ids == ["case_000", "case_001"] and spec.ndim == 3
    assert spec.cases[0].image == root / "imagesTr" / "case_000.nii.gz"
    assert [c.id for c in spec.test_cases] == ["case_002"] and spec.test_cases[0].label is None
    assert DatasetSpec.load(root / "dataset.json").case_ids == spec.case_ids


def test_inverse_label_form(tmp_path: Path) -> None:
    spec = DatasetSpec.load(make_msd(tmp_path / "ds", labels={"background": 0, "b": 2, "a": 1}))
    assert spec.labels == {0: "background", 1: "a", 2: "b"}


def _edit(root: Path, fn) -> None:
    meta = json.loads((root / "dataset.json").read_text())
    fn(meta)
    (root / "dataset.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda m: m["training"][1].update(label="./labelsTr/nope.nii.gz"), "'training[1].label'"),
        (lambda m: m["training"].append(dict(m["training"][0])), "duplicate case id 'case_000'"),
        (lambda m: m.update(training=[]), "'training' is empty"),
        (lambda m: m.pop("training"), "'training' must be a list"),
        (lambda m: m.update(labels=["background"]), "'labels'"),
        (lambda m: m.update(labels={"0": "background", "2": "b"}), "0..K-1"),
        (lambda m: m["training"][0].pop("label"), "'training[0]' needs a 'label'"),
        (lambda m: m.update(test=[{"label": "x"}]), "'test[0]'"),
    ],
)
def test_schema_errors_name_dataset_json_and_key(tmp_path: Path, edit, words: str) -> None:
    root = make_msd(tmp_path / "ds")
    _edit(root, edit)
    with pytest.raises(DataError) as e:
        DatasetSpec.load(root)
    assert "dataset.json" in str(e.value) and words in str(e.value), str(e.value)


def test_missing_and_invalid_json(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dataset.json not found"):
        DatasetSpec.load(tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        DatasetSpec.load(tmp_path)


def make_pngs(tmp_path: Path, n: int = 3, mask_values: tuple = (0, 1)) -> tuple[Path, Path]:
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for i in range(n):
        Image.fromarray(np.full((8, 12), 10 * i, np.uint8)).save(images / f"{i:03d}_HC.png")
        m = np.zeros((8, 12), np.uint8)
        m[2:5, 3:9] = mask_values[-1]
        Image.fromarray(m).save(masks / f"{i:03d}_HC_mask.png")
    return images, masks


def test_import_folder_with_mask_pattern(tmp_path: Path) -> None:
    images, masks = make_pngs(tmp_path)
    spec = import_folder(images, masks, tmp_path / "out", label_pattern="{stem}_mask")
    assert spec.case_ids == ["000_HC", "001_HC", "002_HC"]
    assert spec.labels == {0: "background", 1: "class_1"} and spec.ndim == 2
    assert spec.cases[1].label == (masks / "001_HC_mask.png").resolve()
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert meta["training"][0]["image"] == str((images / "000_HC.png").resolve())  # outside out_dir: absolute
    spec2 = import_folder(images, masks, tmp_path, label_pattern="{stem}_mask", labels={0: "bg", 1: "head"})
    meta2 = json.loads((tmp_path / "dataset.json").read_text())
    assert meta2["training"][0] == {"image": "./images/000_HC.png", "label": "./masks/000_HC_mask.png"}
    assert spec2.labels == {0: "bg", 1: "head"}
    assert read_labels(tmp_path) == {0: "bg", 1: "head"} == read_labels(tmp_path / "dataset.json")
    spec3 = import_folder(images, masks, tmp_path / "o3", label_suffix="_mask")
    assert spec3.case_ids == spec.case_ids


def test_import_folder_writes_nothing_when_one_pair_is_bad(tmp_path: Path) -> None:
    images, masks = make_pngs(tmp_path)
    Image.fromarray(np.zeros((8, 11), np.uint8)).save(masks / "002_HC_mask.png")  # wrong size
    out = tmp_path / "out"
    with pytest.raises(DataError, match="002_HC_mask.png: label shape"):
        import_folder(images, masks, out, label_pattern="{stem}_mask")
    assert not out.exists()


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda im, ms: (ms / "001_HC_mask.png").unlink(), "001_HC.png: no label named 001_HC_mask"),
        (lambda im, ms: (im / "001_HC.png").write_bytes(b"xx"), "001_HC.png: cannot read"),
        (lambda im, ms: Image.fromarray(np.full((8, 12), 255, np.uint8)).save(ms / "000_HC_mask.png"), "not class indices"),
    ],
)
def test_import_folder_refusals(tmp_path: Path, damage, words: str) -> None:
    images, masks = make_pngs(tmp_path)
    damage(images, masks)
    with pytest.raises(DataError, match=words):
        import_folder(images, masks, tmp_path / "out", label_pattern="{stem}_mask")
    assert not (tmp_path / "out").exists()


def test_import_hc18_subset(tmp_path: Path, shared_data: Path) -> None:
    src = shared_data / "hc18_fetal_head_us"
    (tmp_path / "im").mkdir()
    (tmp_path / "ms").mkdir()
    for name in ["000_HC", "010_HC", "010_2HC"]:
        shutil.copy(src / "images" / f"{name}.png", tmp_path / "im")
        shutil.copy(src / "masks" / f"{name}_mask.png", tmp_path / "ms")
    spec = import_folder(tmp_path / "im", tmp_path / "ms", tmp_path / "out", label_pattern="{stem}_mask")
    assert spec.num_classes == 2 and spec.case_ids == ["000_HC", "010_2HC", "010_HC"]
