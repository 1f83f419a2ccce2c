"""Segmentation metrics against hand-computed answers, MONAI and medpy (test-only, GPL)."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage

from uncol.eval.metrics import (
    MetricAccumulator,
    binary_metrics,
    case_metrics,
    format_table,
    image_diagonal,
)

# 2D and 3D cases with anisotropic spacing (torch axis order, mm)
GEOMS = [((48, 56), (0.8, 1.7)), ((20, 26, 24), (2.5, 0.7, 1.1))]


def _blobs(shape: tuple[int, ...], n: int, seed: int, sigma: float = 2.0) -> np.ndarray:
    """Integer label map with n-1 random smooth foreground blobs (values in [0, n))."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.int64)
    for c in range(1, n):
        lab[ndimage.gaussian_filter(rng.standard_normal(shape), sigma) > 0.15] = c
    return lab


def _onehot(lab: np.ndarray, n: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.from_numpy(lab), n).movedim(-1, 0)[None].float()


# ---------------------------------------------------------------- hand-computed answers
@pytest.mark.parametrize("convention", ["standard", "medpy"])
@pytest.mark.parametrize("k", [1, 3, 7])
def test_parallel_lines_offset_by_k(k: int, convention: str) -> None:
    """A 1-px line and its copy k rows lower: every surface distance is exactly k * spacing_row."""
    pred, gt = np.zeros((30, 30), bool), np.zeros((30, 30), bool)
    pred[5, 3:25] = True
    gt[5 + k, 3:25] = True
    sp = (2.0, 0.5)
    r = binary_metrics(pred, gt, sp, convention)
    unit = sp[0] if convention == "standard" else 1.0
    assert r["dice"] == 0.0 and r["jaccard"] == 0.0 and not r["missed"]
    assert r["hd95"] == pytest.approx(k * unit) and r["asd"] == pytest.approx(k * unit)


def test_single_voxels_anisotropic_3d() -> None:
    pred, gt = np.zeros((10, 12, 14), bool), np.zeros((10, 12, 14), bool)
    pred[2, 3, 4] = gt[5, 7, 4 + 2] = True
    sp = (3.0, 0.5, 1.25)
    d = math.sqrt((3 * 3.0) ** 2 + (4 * 0.5) ** 2 + (2 * 1.25) ** 2)
    r = binary_metrics(pred, gt, sp)
    assert r["hd95"] == pytest.approx(d) and r["asd"] == pytest.approx(d)
    assert binary_metrics(pred, gt, sp, "medpy")["hd95"] == pytest.approx(math.sqrt(9 + 16 + 4))


def test_nested_squares_exact_percentiles() -> None:
    """gt = 20x20 square, pred = the same shrunk by 2 px on each side.

    pred→gt: 60 border px all at 2. gt→pred: 64 px at 2, 8 next to corners at √5, 4 corners at √8.
    np.percentile (linear): P95 of the 76 gt→pred values sits at index 71.25 → √5 + 0.25(√8 − √5).
    """
    gt, pred = np.zeros((40, 40), bool), np.zeros((40, 40), bool)
    gt[10:30, 10:30] = True
    pred[12:28, 12:28] = True
    r = binary_metrics(pred, gt, (1.0, 1.0))
    s5, s8 = math.sqrt(5), math.sqrt(8)
    assert r["hd95"] == pytest.approx(s5 + 0.25 * (s8 - s5))
    assert r["asd"] == pytest.approx((124 * 2 + 8 * s5 + 4 * s8) / 136)
    assert r["dice"] == pytest.approx(2 * 256 / (256 + 400))
    assert r["jaccard"] == pytest.approx(256 / 400)
    m = binary_metrics(pred, gt, (1.0, 1.0), "medpy")
    pooled = np.sort(np.r_[np.full(124, 2.0), np.full(8, s5), np.full(4, s8)])
    assert m["hd95"] == pytest.approx(np.percentile(pooled, 95))  # pooled, index 128.25 → 2.0
    assert m["asd"] == pytest.approx(2.0)  # directed pred → gt


# ---------------------------------------------------------------- empty-mask rules
@pytest.mark.parametrize("convention", ["standard", "medpy"])
@pytest.mark.parametrize("shape,sp", GEOMS)
def test_empty_rules(shape: tuple[int, ...], sp: tuple[float, ...], convention: str) -> None:
    empty, full = np.zeros(shape, bool), np.zeros(shape, bool)
    full[(slice(2, 6),) * len(shape)] = True
    both = binary_metrics(empty, empty, sp, convention)
    assert both == {"dice": 1.0, "jaccard": 1.0, "hd95": 0.0, "asd": 0.0, "missed": False}
    diag = image_diagonal(shape, sp if convention == "standard" else (1.0,) * len(shape))
    assert diag > 0
    for p, g in [(empty, full), (full, empty)]:
        r = binary_metrics(p, g, sp, convention)
        assert r == {"dice": 0.0, "jaccard": 0.0, "hd95": pytest.approx(diag), "asd": pytest.approx(diag),
                     "missed": True}


def test_diagonal_is_in_mm() -> None:
    assert image_diagonal((3, 4), (1.0, 1.0)) == pytest.approx(5.0)
    assert image_diagonal((10, 10, 10), (2.0, 1.0, 1.0)) == pytest.approx(math.sqrt(600))


# ---------------------------------------------------------------- independent implementations
@pytest.mark.parametrize("shape,sp", GEOMS)
def test_standard_matches_monai(shape: tuple[int, ...], sp: tuple[float, ...]) -> None:
    """Same border definition and percentile → agreement to float32 precision (rel 1e-5)."""
    from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance

    n = 3
    for seed in range(4):
        pred, gt = _blobs(shape, n, seed), _blobs(shape, n, seed + 100)
        res = case_metrics(pred, gt, n, sp)
        P, G = _onehot(pred, n), _onehot(gt, n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hd = compute_hausdorff_distance(P, G, include_background=False, percentile=95, spacing=list(sp))[0]
            asd = compute_average_surface_distance(P, G, include_background=False, symmetric=True,
                                                   spacing=list(sp))[0]
        dice = compute_dice(P, G, include_background=False)[0]
        for c in range(1, n):
            assert res[c]["hd95"] == pytest.approx(hd[c - 1].item(), rel=1e-5)
            assert res[c]["asd"] == pytest.approx(asd[c - 1].item(), rel=1e-5)
            assert res[c]["dice"] == pytest.approx(dice[c - 1].item(), rel=1e-6)


def test_objects_touching_the_image_border_match_monai() -> None:
    from monai.metrics import compute_hausdorff_distance

    pred, gt = np.zeros((20, 20), np.int64), np.zeros((20, 20), np.int64)
    pred[0:8, 0:20] = 1
    gt[0:11, 3:20] = 1
    r = case_metrics(pred, gt, 2, (1.5, 0.5))[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = compute_hausdorff_distance(_onehot(pred, 2), _onehot(gt, 2), percentile=95, spacing=[1.5, 0.5])
    assert r["hd95"] == pytest.approx(hd.item(), rel=1e-5)


@pytest.mark.parametrize("shape,sp", GEOMS)
def test_medpy_convention_and_assd_match_medpy(shape: tuple[int, ...], sp: tuple[float, ...]) -> None:
    """medpy uses the same border (connectivity=1): exact agreement up to float rounding."""
    mb = pytest.importorskip("medpy.metric.binary")
    for seed in range(4):
        pred, gt = _blobs(shape, 2, seed) > 0, _blobs(shape, 2, seed + 50) > 0
        m = binary_metrics(pred, gt, sp, "medpy")
        assert m["dice"] == pytest.approx(mb.dc(pred, gt), abs=1e-12)
        assert m["jaccard"] == pytest.approx(mb.jc(pred, gt), abs=1e-12)
        assert m["hd95"] == pytest.approx(mb.hd95(pred, gt), abs=1e-9)
        assert m["asd"] == pytest.approx(mb.asd(pred, gt), abs=1e-9)
        s = binary_metrics(pred, gt, sp)
        assert s["asd"] == pytest.approx(mb.assd(pred, gt, voxelspacing=sp), abs=1e-9)
        assert s["hd95"] >= mb.hd95(pred, gt, voxelspacing=sp) - 1e-9  # max of directed ≥ pooled P95


# ---------------------------------------------------------------- accumulator and table
def test_accumulator_format_and_means() -> None:
    acc = MetricAccumulator(3, ["background", "a", "b"])
    shape, sp = GEOMS[0]
    p0, g0 = _blobs(shape, 3, 1), _blobs(shape, 3, 2)
    acc.update("c0", p0, g0, sp)
    p1 = np.zeros(shape, np.int64)  # predicts nothing: both classes missed (GT non-empty)
    acc.update("c1", p1, g0, sp)
    acc.update("c2", np.zeros(shape, np.int64), np.zeros(shape, np.int64), sp)  # both empty: perfect
    out = acc.aggregate()
    assert set(out) >= {"mean", "std", "per_class", "per_case", "missed", "convention"}
    assert out["convention"] == "standard" and out["missed"] == 2 and out["num_cases"] == 3
    assert set(out["per_class"]) == {"a", "b"}
    assert [c["case"] for c in out["per_case"]] == ["c0", "c1", "c2"]
    r0 = case_metrics(p0, g0, 3, sp)
    diag = image_diagonal(shape, sp)
    case_dice = [np.mean([r0[1]["dice"], r0[2]["dice"]]), 0.0, 1.0]
    case_hd = [np.mean([r0[1]["hd95"], r0[2]["hd95"]]), diag, 0.0]
    assert out["mean"]["dice"] == pytest.approx(np.mean(case_dice))
    assert out["std"]["dice"] == pytest.approx(np.std(case_dice))
    assert out["mean"]["hd95"] == pytest.approx(np.mean(case_hd))
    assert out["per_class"]["a"]["dice"] == pytest.approx((r0[1]["dice"] + 0 + 1) / 3)
    assert out["per_class"]["a"]["std"]["dice"] == pytest.approx(np.std([r0[1]["dice"], 0, 1]))
    assert out["per_class"]["b"]["missed"] == 1
    assert out["per_case"][1]["per_class"]["a"] == {"dice": 0.0, "jaccard": 0.0, "hd95": pytest.approx(diag),
                                                    "asd": pytest.approx(diag), "missed": True}
    for m in ("dice", "jaccard"):
        assert 0.0 <= out["mean"][m] <= 1.0
    import json

    json.dumps(out)  # serialisable as metrics.json
    acc.reset()
    assert acc.aggregate()["num_cases"] == 0


def test_accumulator_foreground_names_and_errors() -> None:
    assert MetricAccumulator(2, ["hippo"]).class_names == ["background", "hippo"]
    with pytest.raises(ValueError):
        MetricAccumulator(3, ["x"])
    with pytest.raises(ValueError):
        MetricAccumulator(2, convention="nnunet")
    with pytest.raises(ValueError):
        case_metrics(np.zeros((4, 4), int), np.zeros((4, 5), int), 2, (1, 1))


def test_format_table() -> None:
    acc = MetricAccumulator(3, ["bg", "a", "b"])
    shape, sp = GEOMS[0]
    acc.update("c0", _blobs(shape, 3, 1), _blobs(shape, 3, 2), sp)
    m = acc.aggregate()
    table = format_table({"supervised": m, "uncol": m})
    lines = table.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("| run")
    assert "a Dice %" in lines[0] and "b HD95" in lines[0]
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert f"{100 * m['mean']['dice']:.2f}" in lines[2]
