"""Uncertainty quality of a segmentation network on held-out cases (paper §4.5, Fig. 8).

:func:`collect_voxels` runs the network over cases at native resolution (the same inference as
``uncol evaluate``: :func:`uncol.eval.inference.predict_probs`) and keeps, per voxel, the class
probabilities of the deterministic pass (dropout off), the label, the energy score, and, with
``mc_passes >= 2``, the MC-dropout predictive variance and mutual information (dropout modules in
train mode, everything else — batch norm included — in eval mode). :func:`analyze` turns those
voxels into the measures of :mod:`uncol.eval.calibration`:

* calibration of the deterministic probabilities: reliability diagram (15 equal-width bins), ECE,
  NLL (nats), Brier (multi-class, [0, 2]); the same for the MC-dropout mean when present;
* for each uncertainty score (entropy, energy, MC variance, MC mutual information): AUROC for
  detecting the voxels the deterministic prediction gets wrong, and the risk–coverage curve with its
  AURC, next to the AURC of a perfect score (``optimal_aurc``) and of a random one (the error rate).

Voxel subsampling: each case keeps at most ``max_voxels // n_cases`` voxels (all of a smaller case),
drawn without replacement by a generator seeded with ``seed + case index`` (deterministic).
Logits for the energy score come from the same
``predict_probs`` through an extra constant-zero output channel: ``log p_k - log p_zero = logit_k``
exactly (resizing and sliding-window blending are linear, so the zero channel stays zero), up to
float32 rounding for logits within about ±80.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from uncol.eval import calibration as cal

SCORES = ("entropy", "energy", "mc_variance", "mc_mutual_information")
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


class _Probe(nn.Module):
    """Wraps a network: appends a zero logit channel; with ``mc=True`` keeps dropout modules in train mode."""

    def __init__(self, net: nn.Module, mc: bool = False) -> None:
        super().__init__()
        self.net, self.mc = net, mc

    def train(self, mode: bool = True) -> _Probe:
        super().train(mode)
        if self.mc:
            for m in dropout_modules(self.net):
                m.train(True)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        return torch.cat([logits, torch.zeros_like(logits[:, :1])], dim=1)


def dropout_modules(model: nn.Module) -> list[nn.Module]:
    """The dropout layers of ``model`` (those MC-dropout switches on) with a non-zero rate."""
    return [m for m in model.modules() if isinstance(m, _DROPOUT) and getattr(m, "p", 0.0) > 0]


def case_logits(model: nn.Module, image: torch.Tensor, cfg: Any, device: torch.device, mc: bool = False) -> torch.Tensor:
    """Logits ``(K, *S)`` (float64, CPU) of one case ``image (C, *S)`` at native size, as evaluate infers it."""
    from uncol.eval.inference import predict_probs

    p = predict_probs(_Probe(model, mc), image, cfg, device).double().clamp_min(1e-300)
    return p[:-1].log() - p[-1:].log()


@dataclass
class Voxels:
    """Per-voxel samples: ``probs (N, K)`` float32, ``labels (N,)`` int64, scores ``(N,)`` float64.

    ``mc_probs (N, K)`` is the MC-dropout mean (None without MC passes); ``n_total`` voxels were seen.
    """

    probs: np.ndarray
    labels: np.ndarray
    scores: dict[str, np.ndarray]
    mc_probs: np.ndarray | None
    n_total: int
    mc_passes: int


def collect_voxels(model: nn.Module, spec: Any, case_ids: list[str], cfg: Any, device: torch.device,
                   mc_passes: int = 0, max_voxels: int = 2_000_000, seed: int = 0,
                   progress: bool = False) -> Voxels:
    """Run ``model`` over ``case_ids`` of ``spec`` and collect the voxels (module doc).

    ``mc_passes`` < 2 (or a model without dropout) skips the MC-dropout scores. MC passes are seeded
    with ``torch.manual_seed(seed + case index)`` so the result is reproducible.
    """
    from tqdm.auto import tqdm

    from uncol.data.datasets import load_case
    from uncol.errors import DataError

    use_mc = mc_passes >= 2 and bool(dropout_modules(model))
    per_case = max(1, max_voxels // max(1, len(case_ids)))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("probs", "labels", "mc_probs", *SCORES)}
    n_total = 0
    for i, cid in enumerate(tqdm(case_ids, desc="uncertainty", disable=not progress, dynamic_ncols=True)):
        case = load_case(spec, cid, cfg.data)
        if case.label is None:
            raise DataError(f"case {cid!r} has no label file; uncertainty analysis needs labelled cases")
        logits = case_logits(model, case.image, cfg, device)
        k = logits.shape[0]
        flat = logits.reshape(k, -1)
        label = torch.as_tensor(np.asarray(case.label)).long().reshape(-1)
        n = flat.shape[1]
        n_total += n
        keep = _subsample(n, per_case, seed + i)
        lg = flat[:, keep].T  # (n, K)
        probs = torch.softmax(lg, dim=1)
        parts["probs"].append(probs.float().numpy())
        parts["labels"].append(label[keep].numpy())
        parts["entropy"].append(cal.entropy(probs, dim=1).numpy())
        parts["energy"].append(cal.energy_score(lg, dim=1).numpy())
        if use_mc:
            mean, var, mi = _mc_case(model, case.image, cfg, device, mc_passes, keep, seed + i)
            parts["mc_probs"].append(mean.float().numpy())
            parts["mc_variance"].append(var.numpy())
            parts["mc_mutual_information"].append(mi.numpy())
    cat = {k: np.concatenate(v) for k, v in parts.items() if v}
    scores = {s: cat[s] for s in SCORES if s in cat}
    return Voxels(cat["probs"], cat["labels"], scores, cat.get("mc_probs"), n_total, mc_passes if use_mc else 0)


def _subsample(n: int, m: int, seed: int) -> torch.Tensor:
    """Sorted indices of ``m`` of ``n`` voxels (all when ``m >= n``), drawn with a seeded generator."""
    if m >= n:
        return torch.arange(n)
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.sort(rng.choice(n, size=m, replace=False)))


def _mc_case(model: nn.Module, image: torch.Tensor, cfg: Any, device: torch.device, passes: int,
             keep: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Running MC-dropout sums over ``passes`` (no ``(T, K, *S)`` stack): mean probs ``(n, K)``, variance, MI ``(n,)``.

    Same definitions as :func:`uncol.eval.calibration.mc_dropout_stats` (population variance averaged
    over classes; MI = H(mean) - mean H, clamped at 0)."""
    torch.manual_seed(seed)
    s1 = s2 = h = None
    for _ in range(passes):
        lg = case_logits(model, image, cfg, device, mc=True)
        p = torch.softmax(lg.reshape(lg.shape[0], -1)[:, keep].T, dim=1)  # (n, K)
        ent = cal.entropy(p, dim=1)
        s1 = p if s1 is None else s1 + p
        s2 = p * p if s2 is None else s2 + p * p
        h = ent if h is None else h + ent
    mean = s1 / passes
    var = (s2 / passes - mean * mean).clamp_min(0).mean(1)
    mi = (cal.entropy(mean, dim=1) - h / passes).clamp_min(0)
    return mean, var, mi


def analyze(v: Voxels, n_bins: int = 15, curve_points: int = 201) -> dict[str, Any]:
    """JSON-ready measures of :class:`Voxels` (module doc); curves subsampled to ``curve_points``."""
    probs, labels = torch.from_numpy(v.probs).double(), torch.from_numpy(v.labels)
    errors = cal.prediction_errors(probs, labels)
    err_rate = float(errors.double().mean())
    out: dict[str, Any] = {
        "n_voxels": int(labels.numel()), "n_voxels_total": int(v.n_total),
        "subsampled": bool(labels.numel() < v.n_total), "num_classes": int(probs.shape[1]),
        "accuracy": 1.0 - err_rate, "error_rate": err_rate, "mc_passes": v.mc_passes,
        **cal.calibration_summary(probs, labels, n_bins),
        "optimal_aurc": cal.optimal_aurc(errors), "random_aurc": err_rate, "scores": {},
    }
    for name, score in v.scores.items():
        rc = cal.risk_coverage(score, errors, max_points=curve_points)
        out["scores"][name] = {"auroc": _num(cal.auroc_error_detection(score, errors)), "aurc": rc.aurc,
                               "coverage": rc.coverage.tolist(), "risk": rc.risk.tolist()}
    if v.mc_probs is not None:
        out["mc_mean"] = cal.calibration_summary(torch.from_numpy(v.mc_probs).double(), labels, n_bins)
    return out


def _num(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


def uncertainty_checkpoint(checkpoint: str | Path, data: str | Path, out: str | Path, split: str = "test",
                           split_file: str | Path | None = None, device: str = "auto", mc_passes: int = 10,
                           max_voxels: int = 2_000_000, seed: int = 0, n_bins: int = 15) -> dict[str, Any]:
    """``uncol uncertainty``: analyse a checkpoint on a split; writes ``OUT/uncertainty.json``,
    ``OUT/reliability.png`` and ``OUT/risk_coverage.png`` (all or nothing: :func:`staged_output_dir`).
    Split resolution and output checks as ``uncol evaluate``."""
    from uncol.eval.evaluate import checkpoint_and_cases, guard_out
    from uncol.eval.plots import plot_reliability, plot_risk_coverage
    from uncol.runtime import atomic_write_json, staged_output_dir

    outp = guard_out(out, data)
    model, cfg, _, spec, ids, dev = checkpoint_and_cases(checkpoint, data, split, split_file, device)
    vox = collect_voxels(model, spec, ids, cfg, dev, mc_passes=mc_passes, max_voxels=max_voxels, seed=seed,
                         progress=True)
    res = analyze(vox, n_bins=n_bins)
    res.update(checkpoint=str(checkpoint), data=str(data), split=split, num_cases=len(ids), seed=seed,
               mc_passes_requested=mc_passes, mc_note=None if vox.mc_passes or mc_passes < 2 else
               "the network has no dropout layer; MC-dropout scores skipped")
    with staged_output_dir(outp) as stage:
        atomic_write_json(stage / "uncertainty.json", res)
        plot_reliability(res["reliability"], stage / "reliability.png")
        plot_risk_coverage(res, stage / "risk_coverage.png")
    return res


def summary_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
    """``(measure, value)`` pairs for a table: ECE, NLL, Brier, then AUROC / AURC per score."""
    rows = [("voxels (analysed / total)", f"{res['n_voxels']:,} / {res['n_voxels_total']:,}"),
            ("error rate", f"{100 * res['error_rate']:.2f} %"), ("ECE (15 bins)", f"{100 * res['ece']:.2f} %"),
            ("NLL (nats)", f"{res['nll']:.4f}"), ("Brier", f"{res['brier']:.4f}"),
            ("AURC perfect / random", f"{res['optimal_aurc']:.4f} / {res['random_aurc']:.4f}")]
    for name, s in res.get("scores", {}).items():
        auroc = "–" if s["auroc"] is None else f"{s['auroc']:.4f}"
        rows.append((f"{name}: AUROC / AURC", f"{auroc} / {s['aurc']:.4f}"))
    return rows
