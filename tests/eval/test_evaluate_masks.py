"""evaluate_masks: folders of NIfTI / PNG masks matched by name, and its errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

pytest.importorskip("uncol.data.io", reason="uncol.data.io (read_label) is not written yet")

from uncol.errors import DataError
from uncol.eval.evaluate_masks import evaluate_masks, write_metrics
from uncol.eval.metrics import MetricAccumulator


def _blobs(shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.uint8)
    for c in range(1, n):
        lab[ndimage.gaussian_filter(rng.standard_normal(shape), 1.5) > 0.15] = c
    return lab


def _nii(path: Path, arr_zyx: np.ndarray, spacing_zyx: tuple[float, ...]) -> None:
    """Write a (z,y,x) torch-order array as a NIfTI (x,y,z) file with the given voxel size."""
    import nibabel as nib

    affine = np.diag([*spacing_zyx[::-1], 1.0])
    nib.save(nib.Nifti1Image(np.ascontiguousarray(arr_zyx.transpose(2, 1, 0)), affine), str(path))


def _png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(arr.astype(np.uint8)).save(path)


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    return pred, gt


def test_nifti_3d_matches_accumulator(tmp_path: Path) -> None:
    pred_dir, gt_dir = _folders(tmp_path)
    sp = (2.0, 0.75, 1.25)
    acc = MetricAccumulator(3, ["background", "a", "b"], "standard")
    for i in range(3):
        p, g = _blobs((10, 14, 12), 3, i), _blobs((10, 14, 12), 3, 10 + i)
        _nii(pred_dir / f"case{i}.nii.gz", p, sp)
        _nii(gt_dir / f"case{i}.nii.gz", g, sp)
        acc.update(f"case{i}", p, g, sp)
    (gt_dir / "dataset.json").write_text("{}")  # non-mask files are ignored
    out = evaluate_masks(pred_dir, gt_dir, {0: "background", 1: "a", 2: "b"})
    ref = acc.aggregate()
    assert out["mean"] == pytest.approx(ref["mean"]) and out["per_class"].keys() == ref["per_class"].keys()
    assert [c["case"] for c in out["per_case"]] == ["case0", "case1", "case2"]
    write_metrics(out, tmp_path / "o" / "metrics.json")
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["convention"] == "standard"


def test_png_inferred_labels_and_png_spacing(tmp_path: Path) -> None:
    pred_dir, gt_dir = _folders(tmp_path)
    p, g = _blobs((40, 50), 2, 1), _blobs((40, 50), 2, 2)
    _png(pred_dir / "img.png", p)
    _png(gt_dir / "img.png", g)
    out = evaluate_masks(pred_dir, gt_dir, None, png_spacing=0.5)
    assert list(out["per_class"]) == ["class_1"]
    acc = MetricAccumulator(2, ["background", "class_1"])
    acc.update("img", p, g, (0.5, 0.5))
    assert out["mean"] == pytest.approx(acc.aggregate()["mean"])
    medpy = evaluate_masks(pred_dir, gt_dir, None, convention="medpy", png_spacing=0.5)
    assert medpy["convention"] == "medpy" and medpy["units"] == "voxel"


def test_missing_files_are_errors(tmp_path: Path) -> None:
    pred_dir, gt_dir = _folders(tmp_path)
    m = _blobs((20, 20), 2, 0)
    _png(gt_dir / "a.png", m)
    _png(gt_dir / "b.png", m)
    _png(pred_dir / "a.png", m)
    with pytest.raises(DataError, match=r"b\.png: ground truth has no prediction"):
        evaluate_masks(pred_dir, gt_dir, None)
    _png(pred_dir / "b.png", m)
    _png(pred_dir / "c.png", m)
    with pytest.raises(DataError, match=r"c\.png: prediction has no ground truth"):
        evaluate_masks(pred_dir, gt_dir, None)
    with pytest.raises(DataError, match="folder not found"):
        evaluate_masks(tmp_path / "nope", gt_dir, None)


def test_shape_and_value_errors(tmp_path: Path) -> None:
    pred_dir, gt_dir = _folders(tmp_path)
    _png(gt_dir / "a.png", _blobs((20, 20), 2, 0))
    _png(pred_dir / "a.png", _blobs((20, 22), 2, 0))
    with pytest.raises(DataError, match=r"a\.png: prediction shape \(20, 22\) differs"):
        evaluate_masks(pred_dir, gt_dir, None)
    bad = _blobs((20, 20), 2, 0) * 3  # value 3 not declared
    _png(pred_dir / "a.png", bad)
    with pytest.raises(DataError, match=r"values \[3\] are outside the declared labels 0..1"):
        evaluate_masks(pred_dir, gt_dir, {0: "background", 1: "head"})
    with pytest.raises(DataError, match="outside the classes found in the ground truth"):
        evaluate_masks(pred_dir, gt_dir, None)


def test_duplicate_case_names_are_errors(tmp_path: Path) -> None:
    pred_dir, gt_dir = _folders(tmp_path)
    m = _blobs((6, 8, 8), 2, 0)
    _nii(gt_dir / "x.nii.gz", m, (1, 1, 1))
    _nii(gt_dir / "x.nii", m, (1, 1, 1))
    _nii(pred_dir / "x.nii.gz", m, (1, 1, 1))
    with pytest.raises(DataError, match="appears twice"):
        evaluate_masks(pred_dir, gt_dir, None)


def test_gt_suffix_pairs_hc18_style_names(tmp_path: Path) -> None:
    pred_dir, gt_dir = _folders(tmp_path)
    gt = np.zeros((10, 12), np.uint8)
    gt[2:7, 3:9] = 1
    pred = np.zeros_like(gt)
    pred[3:7, 3:9] = 1
    _png(gt_dir / "000_HC_mask.png", gt)
    _png(pred_dir / "000_HC.png", pred)
    with pytest.raises(DataError, match="--gt-suffix"):
        evaluate_masks(pred_dir, gt_dir)
    res = evaluate_masks(pred_dir, gt_dir, gt_suffix="_mask")
    assert [c["case"] for c in res["per_case"]] == ["000_HC"]
    assert res["mean"]["dice"] == pytest.approx(2 * 24 / (24 + 30))
    from uncol.cli import main

    out = tmp_path / "m.json"
    assert main(["evaluate-masks", "--pred", str(pred_dir), "--gt", str(gt_dir), "--gt-suffix", "_mask",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["mean"]["dice"] == pytest.approx(2 * 24 / (24 + 30))
