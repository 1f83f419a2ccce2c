"""PNG figures of the analysis and the report (matplotlib's Agg canvas, no pyplot, no global state).

Every function takes plain data (the JSON dicts that ``uncol uncertainty`` / ``uncol train`` write,
or numpy arrays), writes one PNG atomically and returns its path.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

SCORE_LABELS = {"entropy": "entropy", "energy": "energy score", "mc_variance": "MC-dropout variance",
                "mc_mutual_information": "MC-dropout mutual inf."}
CLASS_COLORS = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
                         [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230]], dtype=np.float64) / 255


def _figure(w: float, h: float, ncols: int = 1, nrows: int = 1) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _save(fig: Any, path: str | Path) -> Path:
    from uncol.runtime import atomic_write

    p = Path(path)
    atomic_write(p, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    return p


def plot_reliability(rel: dict[str, Any], path: str | Path, title: str = "Reliability diagram") -> Path:
    """Accuracy vs confidence per bin (bars, empty bins blank), the diagonal, and bin counts (log)."""
    fig, ax = _figure(4.6, 4.2)
    ax = ax[0, 0]
    edges = np.asarray(rel["edges"], dtype=np.float64)
    acc = np.array([np.nan if a is None else a for a in rel["accuracy"]], dtype=np.float64)
    conf = np.array([np.nan if c is None else c for c in rel["confidence"]], dtype=np.float64)
    width = np.diff(edges)
    ok = np.isfinite(acc)
    ax.bar(edges[:-1][ok], acc[ok], width=width[ok], align="edge", color="#4c72b0", edgecolor="white", label="accuracy")
    ax.bar(edges[:-1][ok], (conf - acc)[ok], bottom=acc[ok], width=width[ok], align="edge", color="#dd8452",
           alpha=0.45, edgecolor="#dd8452", label="gap to confidence")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (max probability)", ylabel="accuracy",
           title=f"{title}\nECE = {100 * rel['ece']:.2f} %")
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def plot_risk_coverage(res: dict[str, Any], path: str | Path) -> Path:
    """Risk–coverage curves of every score in ``res["scores"]`` with their AURC, plus the optimum."""
    fig, ax = _figure(5.2, 4.2)
    ax = ax[0, 0]
    for name, s in res.get("scores", {}).items():
        ax.plot(s["coverage"], s["risk"], lw=1.6, label=f"{SCORE_LABELS.get(name, name)} (AURC {s['aurc']:.4f})")
    er = res.get("error_rate")
    if er is not None:
        cov = np.linspace(1e-3, 1, 200)
        ax.plot(cov, np.clip((cov - (1 - er)) / cov, 0, None), "k:", lw=1,
                label=f"perfect score (AURC {res['optimal_aurc']:.4f})")
        ax.axhline(er, color="grey", lw=0.8, ls="--", label=f"random score ({er:.4f})")
    ax.set(xlim=(0, 1), ylim=(0, None), xlabel="coverage (fraction of voxels kept)", ylabel="risk (error rate)",
           title="Risk–coverage")
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def _stage_series(records: list[dict[str, Any]], kind: str) -> tuple[dict[str, tuple[list, list]], list[tuple[float, str]]]:
    """``{scalar: (x, y)}`` over records of ``kind``, x continuing across stages; stage start markers."""
    offset, last_stage, last_it, starts = 0.0, None, 0.0, []
    seen: dict[str, float] = {}
    series: dict[str, tuple[list, list]] = {}
    for r in records:
        stage = r.get("stage", "main")
        if stage not in seen:
            if last_stage is not None:
                offset = last_it
            seen[stage] = offset
            starts.append((offset, str(stage)))
        last_stage = stage
        x = seen[stage] + float(r.get("iteration", 0))
        last_it = max(last_it, x)
        if r.get("kind") != kind:
            continue
        for k, v in r.items():
            if k in ("kind", "stage", "iteration") or not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            xs, ys = series.setdefault(k, ([], []))
            xs.append(x)
            ys.append(float(v))
    return series, starts


def plot_training_curves(records: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Two panels from ``log.jsonl`` records: training losses, validation Dice/Jaccard (stages marked)."""
    fig, axes = _figure(10, 3.6, ncols=2)
    tr, starts = _stage_series(records, "train")
    va, _ = _stage_series(records, "val")
    for k, (x, y) in tr.items():
        if k not in ("lr",) and np.isfinite(y).any():
            axes[0, 0].plot(x, y, lw=1.2, label=k)
    for k in ("dice", "jaccard"):
        if k in va:
            axes[0, 1].plot(*va[k], marker="o", ms=3, lw=1.2, label=f"val {k}")
    for ax in axes[0]:
        for x0, name in starts[1:] if len(starts) > 1 else []:
            ax.axvline(x0, color="grey", ls="--", lw=0.8)
            ax.text(x0, 1.0, f" {name}", transform=ax.get_xaxis_transform(), va="top", fontsize=7, color="grey")
        ax.set_xlabel("iteration")
        if ax.lines:
            ax.legend(fontsize=7)
    axes[0, 0].set(title=f"{title} training losses".strip(), yscale="log" if _positive(tr) else "linear")
    axes[0, 1].set(title=f"{title} validation".strip(), ylim=(0, 1))
    return _save(fig, path)


def _positive(series: dict[str, tuple[list, list]]) -> bool:
    ys = [v for k, (_, y) in series.items() if k != "lr" for v in y]
    return bool(ys) and min(ys) > 0


def plot_val_comparison(curves: dict[str, list[dict[str, Any]]], path: str | Path, metric: str = "dice") -> Path:
    """Validation ``metric`` vs iteration of several runs (bench folders), one line per run."""
    fig, ax = _figure(8, 4)
    ax = ax[0, 0]
    for name, records in curves.items():
        va, _ = _stage_series(records, "val")
        if metric in va:
            ax.plot(*va[metric], lw=1.2, marker="o", ms=2, label=name)
    ax.set(xlabel="iteration", ylabel=f"val {metric}", title=f"validation {metric} of every run", ylim=(0, 1))
    if ax.lines:
        ax.legend(fontsize=6, ncol=2)
    return _save(fig, path)


def _contour_rgb(image: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Gray ``image (H, W)`` with label ``mask (H, W)`` blended in per-class colours, ``(H, W, 3)``."""
    lo, hi = np.percentile(image, [0.5, 99.5]) if image.size else (0.0, 1.0)
    g = np.clip((image - lo) / max(hi - lo, 1e-8), 0, 1)
    rgb = np.repeat(g[..., None], 3, axis=2)
    m = np.asarray(mask, dtype=np.int64)
    colors = CLASS_COLORS[np.clip(m, 0, len(CLASS_COLORS) - 1)]
    fg = (m > 0)[..., None]
    return np.where(fg, (1 - alpha) * rgb + alpha * colors, rgb)


def plot_overlay(image: np.ndarray, gt: np.ndarray, pred: np.ndarray, unc: np.ndarray, path: str | Path,
                 title: str, max_unc: float | None = None) -> Path:
    """One row: image, ground truth, prediction (overlaid) and the entropy map, all ``(H, W)``."""
    h, w = image.shape
    fig, axes = _figure(12, 0.8 + 2.7 * min(max(h / w, 0.4), 1.6), ncols=4)
    panels = [("image", np.clip((image - np.percentile(image, 0.5)) / max(np.ptp(image), 1e-8), 0, 1)),
              ("ground truth", _contour_rgb(image, gt)), ("prediction", _contour_rgb(image, pred))]
    for ax, (name, arr) in zip(axes[0], panels):
        ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, interpolation="nearest")
        ax.set_title(name, fontsize=9)
    im = axes[0, 3].imshow(unc, cmap="magma", vmin=0, vmax=max_unc or max(float(np.max(unc)), 1e-6),
                           interpolation="nearest")
    axes[0, 3].set_title("uncertainty (entropy, nats)", fontsize=9)
    fig.colorbar(im, ax=axes[0, 3], fraction=0.046, pad=0.04)
    for ax in axes[0]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def pick_slice(gt: np.ndarray, axis: int = 0) -> int:
    """Slice index along ``axis`` of a 3D label map with the most foreground (ties: nearest the middle)."""
    counts = (np.moveaxis(np.asarray(gt), axis, 0) > 0).reshape(gt.shape[axis], -1).sum(1)
    mid = (gt.shape[axis] - 1) / 2
    order: Sequence[int] = sorted(range(len(counts)), key=lambda i: (-int(counts[i]), abs(i - mid)))
    return int(order[0])
