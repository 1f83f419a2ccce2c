"""uncol.eval.uncertainty end to end on a synthetic dataset and a network whose logits we set.

The "network" reads the foreground logit from the image (background logit 0), so each case's
probabilities — and hence every measure — have a closed-form answer.
"""
from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from uncol.config import Config, DataConfig, to_dict
from uncol.data.dataset import DatasetSpec
from uncol.data.splits import Split
from uncol.eval.calibration import mc_dropout_stats
from uncol.eval.uncertainty import analyze, case_logits, collect_voxels

SIDE = 10  # 10 x 10 = 100 voxels per case
CFG = Config(data=DataConfig(spatial_dims=2, mode="whole", size=(SIDE, SIDE), normalize="none"))
CPU = torch.device("cpu")


def logit(p: float) -> float:
    return math.log(p / (1 - p))


class LogitNet(nn.Module):
    """logits = (0, dropout(x) [, after an eval-mode BatchNorm that would change x in train mode])."""

    def __init__(self, p_drop: float = 0.0) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(1)  # identity in eval mode (running mean 0, var 1); not in train mode
        self.drop = nn.Dropout(p_drop) if p_drop > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.drop(self.bn(x))
        return torch.cat([torch.zeros_like(a), a], dim=1)


def make_ds(root: Path, cases: list[tuple[np.ndarray, np.ndarray]]) -> DatasetSpec:
    """cases: (foreground probability map, label map), each (SIDE, SIDE)."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    training = []
    for i, (p, y) in enumerate(cases):
        a = np.log(p / (1 - p)).astype(np.float32).T  # NIfTI (x, y) is read back as (y, x)
        nib.save(nib.Nifti1Image(a, np.eye(4)), str(root / "imagesTr" / f"c{i}.nii.gz"))
        nib.save(nib.Nifti1Image(y.astype(np.uint8).T, np.eye(4)), str(root / "labelsTr" / f"c{i}.nii.gz"))
        training.append({"image": f"./imagesTr/c{i}.nii.gz", "label": f"./labelsTr/c{i}.nii.gz"})
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "fg"}, "training": training}))
    return DatasetSpec.load(root)


def grid(groups: list[tuple[int, float, int]]) -> tuple[np.ndarray, np.ndarray]:
    """[(count, p_fg, how many of them are labelled fg)] -> (p map, label map) filled in order."""
    p, y = [], []
    for n, pf, n_fg in groups:
        p += [pf] * n
        y += [1] * n_fg + [0] * (n - n_fg)
    assert len(p) == SIDE * SIDE
    return np.array(p).reshape(SIDE, SIDE), np.array(y).reshape(SIDE, SIDE)


def run(tmp_path: Path, groups: list[tuple[int, float, int]], net: nn.Module | None = None, **kw) -> dict:
    spec = make_ds(tmp_path / "ds", [grid(groups)])
    vox = collect_voxels(net or LogitNet(), spec, spec.case_ids, CFG, CPU, **kw)
    return analyze(vox)


def h(p: float) -> float:
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def test_perfectly_calibrated(tmp_path: Path) -> None:
    # 50 voxels at p_fg 0.8 (40 fg), 50 at p_fg 0.3 (15 fg): accuracy = confidence in both bins
    res = run(tmp_path, [(50, 0.8, 40), (50, 0.3, 15)])
    assert res["ece"] == pytest.approx(0.0, abs=1e-5)  # float32 images and probabilities
    assert res["error_rate"] == pytest.approx(0.25)
    nll = -(40 * math.log(0.8) + 10 * math.log(0.2) + 15 * math.log(0.3) + 35 * math.log(0.7)) / 100
    assert res["nll"] == pytest.approx(nll, rel=1e-5)
    brier = (40 * 2 * 0.2**2 + 10 * 2 * 0.8**2 + 15 * 2 * 0.7**2 + 35 * 2 * 0.3**2) / 100
    assert res["brier"] == pytest.approx(brier, rel=1e-5)
    # entropy AUROC by counting pairs (errors: 10 low-entropy, 15 high-entropy; correct: 40 low, 35 high)
    assert res["scores"]["entropy"]["auroc"] == pytest.approx((0.5 * 10 * 40 + 15 * 40 + 0.5 * 15 * 35) / (25 * 75))
    # the same ranking from sklearn on the same voxels
    from sklearn.metrics import roc_auc_score

    errors = np.r_[np.zeros(40), np.ones(10), np.ones(15), np.zeros(35)]
    score = np.r_[np.full(50, h(0.8)), np.full(50, h(0.3))]
    assert res["scores"]["entropy"]["auroc"] == pytest.approx(roc_auc_score(errors, score))
    assert sorted(c for c in res["reliability"]["counts"] if c) == [50, 50]  # two occupied bins


def test_badly_calibrated_and_random_score(tmp_path: Path) -> None:
    # every voxel says p_fg = 0.99, half are background: ECE 0.49; entropy is constant (a random score)
    res = run(tmp_path, [(100, 0.99, 50)])
    assert res["ece"] == pytest.approx(0.49, abs=1e-6)
    assert res["nll"] == pytest.approx(-(math.log(0.99) + math.log(0.01)) / 2, rel=1e-5)
    assert res["brier"] == pytest.approx(0.01**2 + 0.99**2, rel=1e-5)
    for name in ("entropy", "energy"):
        assert res["scores"][name]["auroc"] == pytest.approx(0.5)
        assert res["scores"][name]["aurc"] == pytest.approx(res["random_aurc"]) == pytest.approx(0.5)


def test_perfect_score(tmp_path: Path) -> None:
    # 80 confident right voxels, 20 hesitant wrong ones: entropy ranks every error last
    res = run(tmp_path, [(80, 0.99, 80), (20, 0.6, 0)])
    s = res["scores"]["entropy"]
    assert s["auroc"] == pytest.approx(1.0)
    assert s["aurc"] == pytest.approx(res["optimal_aurc"])
    assert res["optimal_aurc"] < res["random_aurc"] == pytest.approx(0.2)
    assert s["coverage"][-1] == 1.0 and s["risk"][-1] == pytest.approx(0.2)


def test_energy_is_minus_logsumexp_of_the_logits(tmp_path: Path) -> None:
    p, _ = grid([(50, 0.9, 50), (50, 0.2, 0)])
    spec = make_ds(tmp_path / "ds", [(p, np.zeros_like(p))])
    from uncol.data.datasets import load_case

    lg = case_logits(LogitNet(), load_case(spec, spec.case_ids[0], CFG.data).image, CFG, CPU)
    a = torch.from_numpy(np.log(p / (1 - p)))
    assert torch.allclose(lg[1], a, atol=1e-4) and torch.allclose(lg[0], torch.zeros_like(a), atol=1e-4)
    vox = collect_voxels(LogitNet(), spec, spec.case_ids, CFG, CPU)
    ref = -np.logaddexp(0.0, a.numpy().reshape(-1))
    np.testing.assert_allclose(vox.scores["energy"], ref, atol=1e-4)


def test_mc_dropout_matches_stacked_reference_and_keeps_batchnorm_in_eval(tmp_path: Path) -> None:
    p, y = grid([(60, 0.9, 60), (40, 0.5, 20)])  # logit 0 where p = 0.5: dropout changes nothing there
    spec = make_ds(tmp_path / "ds", [(p, y)])
    net = LogitNet(p_drop=0.5).eval()
    net.bn.running_mean.fill_(0.0)
    vox = collect_voxels(net, spec, spec.case_ids, CFG, CPU, mc_passes=6, seed=3)
    assert vox.mc_passes == 6 and not net.bn.training
    from uncol.data.datasets import load_case

    img = load_case(spec, spec.case_ids[0], CFG.data).image
    torch.manual_seed(3)  # seed + case index 0, as collect_voxels seeds
    stack = torch.stack([torch.softmax(case_logits(net, img, CFG, CPU, mc=True), 0) for _ in range(6)])
    ref = mc_dropout_stats(stack.unsqueeze(1))  # (T, B=1, K, H, W)
    np.testing.assert_allclose(vox.scores["mc_variance"], ref.predictive_variance.reshape(-1).numpy(), atol=1e-9)
    np.testing.assert_allclose(vox.scores["mc_mutual_information"], ref.mutual_information.reshape(-1).numpy(),
                               atol=1e-9)
    var = vox.scores["mc_variance"].reshape(SIDE, SIDE)
    assert np.all(var[p == 0.5] < 1e-12)  # logit 0: dropout cannot change it
    assert (var[p == 0.9] > 1e-4).mean() > 0.8  # logit 2a or 0 (all 6 passes alike with prob. 1/32)
    # deterministic pass = dropout off: the probabilities are exactly the set ones
    np.testing.assert_allclose(vox.probs[:, 1], p.reshape(-1), atol=1e-5)
    res = analyze(vox)
    assert set(res["scores"]) == {"entropy", "energy", "mc_variance", "mc_mutual_information"}
    assert "mc_mean" in res


def test_no_dropout_no_mc_scores_and_deterministic_subsample(tmp_path: Path) -> None:
    cases = [grid([(100, 0.7, 60)]), grid([(50, 0.9, 40), (50, 0.2, 10)])]
    spec = make_ds(tmp_path / "ds", cases)
    v1 = collect_voxels(LogitNet(), spec, spec.case_ids, CFG, CPU, mc_passes=5, max_voxels=60, seed=1)
    v2 = collect_voxels(LogitNet(), spec, spec.case_ids, CFG, CPU, mc_passes=5, max_voxels=60, seed=1)
    assert v1.mc_passes == 0 and set(v1.scores) == {"entropy", "energy"}
    assert len(v1.labels) == 60 and v1.n_total == 200
    np.testing.assert_array_equal(v1.labels, v2.labels)
    np.testing.assert_array_equal(v1.probs, v2.probs)
    assert analyze(v1)["subsampled"] is True


def test_cli_writes_json_and_plots(tmp_path: Path) -> None:
    from uncol.cli import main
    from uncol.engine.checkpoint import save_checkpoint
    from uncol.models import build_model

    cases = [grid([(100, 0.6, 50)]), grid([(100, 0.7, 60)]), grid([(60, 0.8, 50), (40, 0.3, 10)])]
    spec = make_ds(tmp_path / "ds", cases)
    cfg = replace(CFG, data=replace(CFG.data, root=str(spec.root), size=(16, 16)))
    model = build_model(cfg.model, spatial_dims=2, num_classes=2)
    run = tmp_path / "run"
    save_checkpoint({"config": to_dict(cfg), "model": model.state_dict(), "spatial_dims": 2, "num_classes": 2},
                    run / "best.pt")
    c0, c1, c2 = spec.case_ids
    Split(train=[c0], val=[], test=[c1, c2], labeled=[c0], unlabeled=[]).save(run / "split.json")
    out = tmp_path / "unc"
    rc = main(["uncertainty", "--checkpoint", str(run / "best.pt"), "--data", str(spec.root), "--out", str(out),
               "--mc-passes", "3", "--device", "cpu"])
    assert rc == 0
    res = json.loads((out / "uncertainty.json").read_text())
    assert res["num_cases"] == 2 and res["n_voxels"] == 200 and res["mc_passes"] == 3  # the U-Net has dropout
    assert len(res["reliability"]["counts"]) == 15
    for png in ("reliability.png", "risk_coverage.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["uncertainty", "--checkpoint", str(run / "best.pt"), "--data", str(spec.root), "--out", str(out),
                 "--split", "tests", "--device", "cpu"]) == 2  # unknown split: one-line error, exit 2
