"""Calibration and uncertainty-quality measures (voxel-wise), plus the uncertainty scores they rank.

Inputs are torch tensors or numpy arrays. Probabilities are ``(N, K)`` with labels ``(N,)``, or dense
``(B, K, *S)`` with labels ``(B, *S)`` (flattened to one voxel per row). Scores and error maps have any
shape, flattened together. Logarithms are natural (nats).

Measures: :func:`reliability_diagram` / :func:`ece` (equal-width confidence bins), :func:`nll`,
:func:`brier`, :func:`auroc_error_detection`, :func:`risk_coverage` (with AURC) and
:func:`optimal_aurc`. Scores (higher = more uncertain): :func:`entropy`, :func:`energy_score`,
:func:`mc_dropout_stats` (predictive variance and mutual information).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from uncol.pseudo.uncertainty import hard_label

Array = torch.Tensor | np.ndarray


def _t(x: Array) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def flatten_probs(probs: Array, labels: Array) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, K, *S)`` + ``(B, *S)`` (or ``(N, K)`` + ``(N,)``) → float64 ``(N, K)`` and int64 ``(N,)``."""
    p, y = _t(probs).double(), _t(labels).long()
    if p.ndim != y.ndim + 1 or p.shape[:1] + p.shape[2:] != y.shape:
        raise ValueError(f"probs {tuple(p.shape)} do not match labels {tuple(y.shape)}: expected (B,K,*S) and (B,*S)")
    k = p.shape[1]
    return p.movedim(1, -1).reshape(-1, k), y.reshape(-1)


def prediction_errors(probs: Array, labels: Array) -> torch.Tensor:
    """Bool map ``(B, *S)`` (or ``(N,)``): True where ``argmax_k probs != label`` (the positives below)."""
    return hard_label(_t(probs), dim=1) != _t(labels).long()


@dataclass(frozen=True)
class Reliability:
    """Reliability-diagram data for ``n_bins`` equal-width bins of top-1 confidence over [0, 1].

    ``edges (n_bins+1,)``; per bin: mean ``confidence``, ``accuracy`` (NaN where the bin is empty) and
    voxel ``counts``. ``ece = sum_b counts_b / N * |accuracy_b - confidence_b|``.
    """

    ece: float
    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    counts: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (empty bins as ``None``)."""
        def lst(a: np.ndarray) -> list[float | None]:
            return [None if not np.isfinite(v) else float(v) for v in a]

        return {"ece": self.ece, "edges": lst(self.edges), "confidence": lst(self.confidence),
                "accuracy": lst(self.accuracy), "counts": [int(c) for c in self.counts]}


def reliability_diagram(probs: Array, labels: Array, n_bins: int = 15) -> Reliability:
    """Top-label calibration: bins ``[lo, hi)`` (the last one closed at 1) of the max probability.

    Matches ``torchmetrics`` ``multiclass_calibration_error(norm="l1")`` except that a confidence of
    exactly 1.0 falls into the last bin here (torchmetrics gives it a bin of its own).
    """
    p, y = flatten_probs(probs, labels)
    conf, pred = p.max(1)
    correct = (pred == y).double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    idx = torch.bucketize(conf, edges[1:-1].to(conf.device), right=True).cpu()
    conf, correct = conf.cpu(), correct.cpu()
    counts = torch.bincount(idx, minlength=n_bins).double()
    sum_conf = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, idx, conf)
    sum_acc = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, idx, correct)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = (sum_conf / counts).numpy()
        mean_acc = (sum_acc / counts).numpy()
    n = max(int(counts.sum()), 1)
    ece = float(((sum_acc - sum_conf).abs().sum() / n).item())  # = sum_b n_b/N |acc_b - conf_b|
    return Reliability(ece, edges.numpy(), mean_conf, mean_acc, counts.long().numpy())


def ece(probs: Array, labels: Array, n_bins: int = 15) -> float:
    """Expected calibration error (fraction in [0, 1]) of :func:`reliability_diagram`."""
    return reliability_diagram(probs, labels, n_bins).ece


def nll(probs: Array, labels: Array, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood ``-log p_y`` per voxel (nats); ``p_y`` clamped at ``eps``."""
    p, y = flatten_probs(probs, labels)
    return float(-p.gather(1, y[:, None]).clamp_min(eps).log().mean().item())


def brier(probs: Array, labels: Array) -> float:
    """Multi-class Brier score: ``sum_k (p_k - onehot_k)^2`` per voxel, mean over voxels; range [0, 2].

    For K = 2 it is twice the binary Brier score of the foreground probability.
    """
    p, y = flatten_probs(probs, labels)
    onehot = torch.nn.functional.one_hot(y, p.shape[1]).double()
    return float(((p - onehot) ** 2).sum(1).mean().item())


def _score_errors(score: Array, errors: Array) -> tuple[np.ndarray, np.ndarray]:
    s = _t(score).detach().double().cpu().reshape(-1).numpy()
    e = _t(errors).detach().bool().cpu().reshape(-1).numpy()
    if s.shape != e.shape:
        raise ValueError(f"score has {s.size} values but errors has {e.size}")
    return s, e


def auroc_error_detection(score: Array, errors: Array) -> float:
    """AUROC of ``score`` (higher = more uncertain) for detecting wrong voxels (``errors`` True = positive).

    Mann–Whitney U with average ranks, so tied scores count 1/2. NaN when there are no errors or no
    correct voxels (undefined). Equals ``sklearn.metrics.roc_auc_score(errors, score)``.
    """
    from scipy.stats import rankdata

    s, e = _score_errors(score, errors)
    n_pos = int(e.sum())
    n_neg = e.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)  # average ranks for ties
    return float((ranks[e].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


class RiskCoverage(NamedTuple):
    """``coverage (M,)`` fractions kept, ``risk (M,)`` error rate among kept voxels, ``aurc`` area."""

    coverage: np.ndarray
    risk: np.ndarray
    aurc: float


def _aurc_from_sorted(e_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(1, e_sorted.size + 1, dtype=np.float64)
    return k / e_sorted.size, np.cumsum(e_sorted) / k


def risk_coverage(score: Array, errors: Array, max_points: int | None = 1001) -> RiskCoverage:
    """Risk–coverage curve: keep the ``k`` most certain voxels (lowest score), k = 1..N.

    ``risk_k`` = errors among them / k; ``aurc`` = mean of ``risk_k`` over all k (Geifman et al.).
    Tied scores are ordered at random in expectation: inside a group of equal scores each voxel counts
    the group's error rate, so the result does not depend on the sort order. The returned curve is
    subsampled to at most ``max_points`` evenly spaced k (the last one, coverage 1, always kept);
    ``aurc`` always uses all N points.
    """
    s, e = _score_errors(score, errors)
    if s.size == 0:
        raise ValueError("risk_coverage needs at least one voxel")
    order = np.argsort(s, kind="stable")
    s_sorted, e_sorted = s[order], e[order].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    sizes = np.diff(np.r_[starts, s.size])
    group_err = np.add.reduceat(e_sorted, starts) / sizes
    coverage, risk = _aurc_from_sorted(np.repeat(group_err, sizes))
    aurc = float(risk.mean())
    if max_points is not None and s.size > max_points:
        keep = np.unique(np.linspace(0, s.size - 1, max_points).round().astype(np.int64))
        coverage, risk = coverage[keep], risk[keep]
    return RiskCoverage(coverage, risk, aurc)


def optimal_aurc(errors: Array) -> float:
    """AURC of a perfect score (all errors ranked last): ``mean_k max(0, k - (N - E)) / k``."""
    e = _t(errors).detach().bool().cpu().reshape(-1).numpy()
    return float(_aurc_from_sorted(np.sort(e.astype(np.float64)))[1].mean())


def entropy(probs: Array, dim: int = 1) -> torch.Tensor:
    """Predictive entropy ``-sum_k p_k log p_k`` (nats, 0 log 0 = 0) over ``dim``: ``(B,K,*S) → (B,*S)``."""
    p = _t(probs).double() if not isinstance(probs, torch.Tensor) else probs
    return -torch.special.xlogy(p, p).sum(dim)


def energy_score(logits: Array, T: float = 1.0, dim: int = 1) -> torch.Tensor:
    """Energy ``-T logsumexp(logits / T)`` over ``dim``: ``(B,K,*S) → (B,*S)``; higher = more uncertain."""
    x = _t(logits)
    return -T * torch.logsumexp(x / T, dim=dim)


class McDropoutStats(NamedTuple):
    """``mean_probs (B,K,*S)``; ``predictive_variance`` and ``mutual_information`` ``(B,*S)``."""

    mean_probs: torch.Tensor
    predictive_variance: torch.Tensor
    mutual_information: torch.Tensor


def mc_dropout_stats(prob_samples: Array) -> McDropoutStats:
    """Summaries of T stochastic forward passes ``prob_samples (T, B, K, *S)`` (softmax probabilities).

    ``predictive_variance`` = variance over passes (population, ddof=0) averaged over classes;
    ``mutual_information`` (BALD) = H(mean_t p_t) - mean_t H(p_t) >= 0 (nats, clamped at 0).
    """
    s = _t(prob_samples)
    if s.ndim < 4:
        raise ValueError(f"prob_samples must be (T, B, K, *S), got shape {tuple(s.shape)}")
    mean = s.mean(0)
    var = s.var(0, unbiased=False).mean(1)
    mi = (entropy(mean, dim=1) - entropy(s, dim=2).mean(0)).clamp_min(0)
    return McDropoutStats(mean, var, mi)


def calibration_summary(probs: Array, labels: Array, n_bins: int = 15) -> dict[str, Any]:
    """JSON-ready ``{"ece", "nll", "brier", "reliability": {...}}`` of probabilities ``(B,K,*S)``."""
    rel = reliability_diagram(probs, labels, n_bins)
    return {"ece": rel.ece, "nll": nll(probs, labels), "brier": brier(probs, labels), "reliability": rel.to_dict()}
