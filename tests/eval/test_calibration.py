"""Calibration and uncertainty measures: known answers, torchmetrics and scikit-learn."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from uncol.eval.calibration import (
    auroc_error_detection,
    brier,
    calibration_summary,
    ece,
    energy_score,
    entropy,
    flatten_probs,
    mc_dropout_stats,
    nll,
    optimal_aurc,
    prediction_errors,
    reliability_diagram,
    risk_coverage,
)


def _random_probs(n: int, k: int, seed: int, sharp: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(sharp * torch.randn(n, k, generator=g, dtype=torch.float64), 1)
    labels = torch.randint(0, k, (n,), generator=g)
    return probs, labels


def _binary_at(conf: float, n: int, n_correct: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n voxels predicting class 1 with probability ``conf``; the first ``n_correct`` are right."""
    probs = torch.tensor([[1 - conf, conf]], dtype=torch.float64).repeat(n, 1)
    labels = torch.zeros(n, dtype=torch.long)
    labels[:n_correct] = 1
    return probs, labels


# ---------------------------------------------------------------- ECE / reliability
def test_perfectly_calibrated_has_zero_ece() -> None:
    parts = [_binary_at(c, 100, round(100 * c)) for c in (0.55, 0.65, 0.75, 0.85, 0.95)]  # 5 distinct bins
    probs, labels = torch.cat([p for p, _ in parts]), torch.cat([y for _, y in parts])
    rel = reliability_diagram(probs, labels, 15)
    assert rel.ece == pytest.approx(0.0, abs=1e-12)
    assert rel.counts.sum() == 500 and (rel.counts > 0).sum() == 5
    full = rel.counts > 0
    np.testing.assert_allclose(rel.accuracy[full], rel.confidence[full])
    assert np.isnan(rel.accuracy[~full]).all()
    assert rel.to_dict()["accuracy"][0] is None


def test_overconfident_ece_is_the_gap() -> None:
    probs, labels = _binary_at(0.9, 200, 120)  # 90 % confident, 60 % right
    assert ece(probs, labels) == pytest.approx(0.3)
    p2, y2 = _binary_at(0.6, 100, 90)  # under-confident half: 60 % vs 90 %
    assert ece(torch.cat([probs, p2]), torch.cat([labels, y2])) == pytest.approx((200 * 0.3 + 100 * 0.3) / 300)


@pytest.mark.parametrize("k", [2, 4])
def test_ece_matches_torchmetrics(k: int) -> None:
    from torchmetrics.functional.classification import multiclass_calibration_error

    probs, labels = _random_probs(4000, k, seed=k)
    ref = multiclass_calibration_error(probs, labels, num_classes=k, n_bins=15, norm="l1")
    assert ece(probs, labels) == pytest.approx(ref.item(), abs=1e-6)


def test_dense_shapes_flatten_like_rows() -> None:
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(2, 3, 4, 5, 6, generator=g), 1)
    labels = torch.randint(0, 3, (2, 4, 5, 6), generator=g)
    rows, y = flatten_probs(probs, labels)
    assert rows.shape == (240, 3) and torch.equal(rows[7], probs[0, :, 0, 1, 1].double()) and y[7] == labels[0, 0, 1, 1]
    assert ece(probs, labels) == pytest.approx(ece(rows, y))
    assert nll(probs.numpy(), labels.numpy()) == pytest.approx(nll(rows, y))
    assert prediction_errors(probs, labels).shape == (2, 4, 5, 6)
    with pytest.raises(ValueError):
        flatten_probs(probs, labels[:, 0])
    out = calibration_summary(probs, labels)
    assert set(out) == {"ece", "nll", "brier", "reliability"} and len(out["reliability"]["counts"]) == 15


# ---------------------------------------------------------------- NLL / Brier
@pytest.mark.parametrize("k", [2, 5])
def test_nll_and_brier_match_sklearn(k: int) -> None:
    from sklearn.metrics import brier_score_loss, log_loss

    probs, labels = _random_probs(3000, k, seed=10 + k)
    p64 = probs.double().numpy()
    assert nll(probs, labels) == pytest.approx(log_loss(labels.numpy(), p64, labels=list(range(k))), rel=1e-6)
    ref = brier_score_loss(labels.numpy(), p64, labels=list(range(k)), scale_by_half=False)
    assert brier(probs, labels) == pytest.approx(ref, rel=1e-6)
    if k == 2:  # twice the binary Brier score of the foreground probability
        assert brier(probs, labels) == pytest.approx(2 * brier_score_loss(labels.numpy(), p64[:, 1]), rel=1e-6)


def test_nll_brier_known_values() -> None:
    probs, labels = _binary_at(0.8, 10, 10)
    assert nll(probs, labels) == pytest.approx(-math.log(0.8))
    assert brier(probs, labels) == pytest.approx(2 * 0.2**2)
    onehot = torch.eye(3)[torch.tensor([0, 2, 1])]
    assert nll(onehot, torch.tensor([0, 2, 1])) == pytest.approx(0.0) and brier(onehot, torch.tensor([0, 2, 1])) == 0


# ---------------------------------------------------------------- AUROC of error detection
def test_auroc_matches_sklearn_and_torchmetrics_with_ties() -> None:
    from sklearn.metrics import roc_auc_score
    from torchmetrics.functional.classification import binary_auroc

    rng = np.random.default_rng(0)
    errors = rng.random(5000) < 0.2
    score = rng.integers(0, 6, 5000) + 2 * errors  # heavy ties, informative
    ours = auroc_error_detection(score, errors)
    assert ours == pytest.approx(roc_auc_score(errors, score), abs=1e-12)
    assert ours == pytest.approx(binary_auroc(torch.as_tensor(score).float(), torch.as_tensor(errors).long()).item(),
                                 abs=1e-5)


def test_auroc_perfect_random_constant_and_undefined() -> None:
    rng = np.random.default_rng(1)
    errors = rng.random(20000) < 0.1
    assert auroc_error_detection(errors.astype(float) + 0.01 * rng.random(20000), errors) == 1.0
    assert auroc_error_detection(-errors.astype(float), errors) == 0.0
    assert abs(auroc_error_detection(rng.random(20000), errors) - 0.5) < 0.02
    assert auroc_error_detection(np.ones(20000), errors) == 0.5  # all tied
    assert math.isnan(auroc_error_detection(rng.random(10), np.zeros(10, bool)))


# ---------------------------------------------------------------- risk–coverage
def test_risk_coverage_hand_example() -> None:
    score = np.array([0.1, 0.2, 0.3, 0.4])
    errors = np.array([False, True, False, True])
    cov, risk, aurc = risk_coverage(score, errors)
    np.testing.assert_allclose(cov, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0, 1 / 2, 1 / 3, 2 / 4])
    assert aurc == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 2) / 4)


def test_risk_coverage_perfect_random_and_ties() -> None:
    rng = np.random.default_rng(2)
    n = 10000
    errors = rng.random(n) < 0.15
    rate = errors.mean()
    perfect = risk_coverage(errors + 0.01 * rng.random(n), errors)
    assert perfect.aurc == pytest.approx(optimal_aurc(errors), abs=1e-12)
    assert optimal_aurc(errors) == pytest.approx(rate + (1 - rate) * math.log(1 - rate), abs=1e-3)  # closed form
    assert risk_coverage(rng.random(n), errors).aurc == pytest.approx(rate, abs=0.02)
    const = risk_coverage(np.zeros(n), errors)  # all tied: expected risk = error rate everywhere
    assert const.aurc == pytest.approx(rate) and np.allclose(const.risk, rate)
    assert len(const.coverage) == 1001 and const.coverage[-1] == 1.0 and const.risk[-1] == pytest.approx(rate)
    perm = rng.permutation(n)  # order inside ties does not matter
    tied = rng.integers(0, 4, n)
    assert risk_coverage(tied, errors).aurc == pytest.approx(risk_coverage(tied[perm], errors[perm]).aurc)


# ---------------------------------------------------------------- uncertainty scores
def test_entropy_and_energy() -> None:
    probs = torch.tensor([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(entropy(probs).numpy(), [math.log(4), 0.0], atol=1e-6)
    dense = torch.softmax(torch.randn(2, 3, 4, 4), 1)
    assert entropy(dense).shape == (2, 4, 4)
    logits = torch.tensor([[10.0, 0.0], [0.0, 0.0]])
    e = energy_score(logits)
    np.testing.assert_allclose(e.numpy(), -torch.logsumexp(logits, 1).numpy())
    assert e[1] > e[0]  # the flatter (more uncertain) prediction has the higher energy
    np.testing.assert_allclose(energy_score(logits, T=2.0).numpy(), (-2 * torch.logsumexp(logits / 2, 1)).numpy())


def test_mc_dropout_stats_known_answers() -> None:
    same = torch.softmax(torch.randn(1, 2, 3, 5, 5), 2).repeat(4, 1, 1, 1, 1)  # (T=4, B=2, K=3, 5, 5)
    st = mc_dropout_stats(same)
    assert st.mean_probs.shape == (2, 3, 5, 5) and st.predictive_variance.shape == (2, 5, 5)
    torch.testing.assert_close(st.mean_probs, same[0])
    assert st.predictive_variance.abs().max() < 1e-7 and st.mutual_information.max() < 1e-6
    flip = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])[..., None]  # (T=2, B=1, K=2, 1): total disagreement
    st = mc_dropout_stats(flip)
    torch.testing.assert_close(st.mean_probs, torch.full((1, 2, 1), 0.5))
    assert st.predictive_variance.item() == pytest.approx(0.25)
    assert st.mutual_information.item() == pytest.approx(math.log(2))
