"""Segmentation metrics: Dice, Jaccard, HD95 and ASD per class, a MONAI-style accumulator, a table.

Two conventions (``convention=``):

``"standard"`` (MONAI / DeepMind ``surface-distance``), distances in mm using the spacing (in pixels,
    and labelled ``"px"``, when the spacing is unknown: ``spacing=None``):
    HD95 = max(P95(d(pred→gt)), P95(d(gt→pred))), the larger of the two directed 95th percentiles;
    ASD  = mean of the pooled surface distances of both directions (MONAI's
    ``compute_average_surface_distance(symmetric=True)``, and medpy>=0.5's ``assd``; older medpy
    averaged the two directed means, which differs when the two surfaces have different voxel counts).
``"medpy"`` (the numbers of the semi-supervised literature, e.g. SSL4MIS / BCP tables), VOXEL units
    (the spacing is ignored): HD95 = P95 of the pooled distances of both directions (medpy ``hd95``),
    ASD = mean of the directed distances pred→gt (medpy ``asd``).

Surfaces: the border of a binary mask is ``mask XOR binary_erosion(mask)`` with the cross (face-
connected) structuring element and zeros outside the image — the definition of both MONAI (without
sub-voxel edges) and medpy (``connectivity=1``). Distances: ``scipy.ndimage.distance_transform_edt``
to the other border, with ``sampling=spacing``. Percentiles interpolate linearly (``np.percentile``).

Empty masks (both conventions): both empty → Dice 1, Jaccard 1, HD95 0, ASD 0; exactly one empty →
Dice 0, Jaccard 0, HD95 = ASD = the image diagonal ``sqrt(sum((shape_i * spacing_i)^2))`` (mm;
voxels for ``"medpy"``) and ``missed=True``. A miss never scores a 0 distance.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

CONVENTIONS = ("standard", "medpy")
METRICS = ("dice", "jaccard", "hd95", "asd")


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")


def _spacing(spacing: Sequence[float] | float | None, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    if np.isscalar(spacing):
        return (float(spacing),) * ndim  # type: ignore[arg-type]
    sp = tuple(float(s) for s in spacing)  # type: ignore[union-attr]
    if len(sp) != ndim:
        raise ValueError(f"spacing {sp} has {len(sp)} entries for a {ndim}-D mask")
    return sp


def image_diagonal(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Length of the image diagonal ``sqrt(sum((shape_i * spacing_i)^2))`` (mm when spacing is in mm)."""
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing))))


def _border(mask: np.ndarray) -> np.ndarray:
    """Surface voxels of a bool mask: ``mask XOR erosion(mask)``, cross structuring element, zero outside."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask ^ ndimage.binary_erosion(mask, structure=structure, iterations=1, border_value=0)


def surface_distances(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances between two non-empty bool masks of the same shape ``(*S)``.

    Returns ``(d_pred_to_gt, d_gt_to_pred)``: for each border voxel of ``pred`` the distance to the
    nearest border voxel of ``gt`` and vice versa, in the units of ``spacing`` (voxels when None).
    Both masks are cropped to the bounding box of their union (plus a 1-voxel zero margin), which
    leaves every distance unchanged.
    """
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if not pred.any() or not gt.any():
        raise ValueError("surface_distances needs two non-empty masks; empty masks are handled by case_metrics")
    sp = _spacing(spacing, pred.ndim)
    idx = np.nonzero(pred | gt)
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in idx)
    p = np.pad(pred[box], 1)
    g = np.pad(gt[box], 1)
    bp, bg = _border(p), _border(g)
    d_pg = ndimage.distance_transform_edt(~bg, sampling=sp)[bp]
    d_gp = ndimage.distance_transform_edt(~bp, sampling=sp)[bg]
    return d_pg, d_gp


def binary_metrics(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | None = None, convention: str = "standard"
) -> dict[str, Any]:
    """Dice, Jaccard (fractions), HD95 and ASD of two bool masks ``(*S)``; ``missed`` as in the module doc.

    Distances in mm from ``spacing`` (``"standard"``) or in voxels (``"medpy"``).
    """
    _check_convention(convention)
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"pred shape {pred.shape} != gt shape {gt.shape}")
    sp = _spacing(spacing, pred.ndim) if convention == "standard" else (1.0,) * pred.ndim
    n_p, n_g = int(pred.sum()), int(gt.sum())
    if n_p == 0 and n_g == 0:
        return {"dice": 1.0, "jaccard": 1.0, "hd95": 0.0, "asd": 0.0, "missed": False}
    if n_p == 0 or n_g == 0:
        diag = image_diagonal(pred.shape, sp)
        return {"dice": 0.0, "jaccard": 0.0, "hd95": diag, "asd": diag, "missed": True}
    inter = int(np.logical_and(pred, gt).sum())
    dice = 2.0 * inter / (n_p + n_g)
    jaccard = inter / (n_p + n_g - inter)
    d_pg, d_gp = surface_distances(pred, gt, sp)
    if convention == "standard":
        hd95 = max(float(np.percentile(d_pg, 95)), float(np.percentile(d_gp, 95)))
        asd = float(np.concatenate([d_pg, d_gp]).mean())
    else:
        hd95 = float(np.percentile(np.concatenate([d_pg, d_gp]), 95))
        asd = float(d_pg.mean())
    return {"dice": dice, "jaccard": jaccard, "hd95": hd95, "asd": asd, "missed": False}


def case_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    num_classes: int,
    spacing: Sequence[float] | None = None,
    convention: str = "standard",
) -> dict[int, dict[str, Any]]:
    """Metrics of one case for each foreground class ``1..num_classes-1``.

    Args:
        pred, gt: integer label maps ``(*S)`` (2D ``(H, W)`` or 3D ``(D, H, W)``), values in ``[0, K)``.
        num_classes: K, background included.
        spacing: voxel size in mm, same axis order as the arrays (ignored by ``"medpy"``).
        convention: ``"standard"`` or ``"medpy"`` (module doc).

    Returns:
        ``{class_index: {"dice", "jaccard", "hd95", "asd", "missed"}}``.
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred shape {pred.shape} != gt shape {gt.shape}")
    if pred.ndim not in (2, 3):
        raise ValueError(f"masks must be 2D or 3D, got shape {pred.shape}")
    sp = _spacing(spacing, pred.ndim)
    return {c: binary_metrics(pred == c, gt == c, sp, convention) for c in range(1, num_classes)}


def _mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return (float(a.mean()), float(a.std())) if a.size else (float("nan"), float("nan"))


class MetricAccumulator:
    """Collects per-case metrics (``update``) and summarises them in the ``metrics.json`` format.

    ``aggregate()`` returns::

        {"mean": {dice, jaccard, hd95, asd},   # over cases of the mean over foreground classes
         "std":  {...},                         # population std (ddof=0) over cases of that class mean
         "per_class": {NAME: {dice, jaccard, hd95, asd, "std": {...}, "missed": n}},
         "per_case": [{"case": ID, "per_class": {NAME: {dice, jaccard, hd95, asd, "missed": bool}},
                       "mean": {...}}],
         "missed": N,                           # (case, class) pairs with exactly one of pred/gt empty
         "num_cases": n, "convention": "standard" | "medpy",
         "units": "mm" | "px" | "voxel"}       # px: standard convention, spacing unknown (None)

    Cases with a known spacing (mm) and cases without (px) cannot be averaged together: ``update``
    refuses the mix with a DataError.
    """

    def __init__(
        self, num_classes: int, class_names: Sequence[str] | None = None, convention: str = "standard"
    ) -> None:
        _check_convention(convention)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background + foreground), got {num_classes}")
        names = list(class_names) if class_names is not None else [f"class_{c}" for c in range(num_classes)]
        if len(names) == num_classes - 1:  # foreground names only
            names = ["background", *names]
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class names for {num_classes} classes")
        self.num_classes = num_classes
        self.class_names = names
        self.convention = convention
        self._cases: list[tuple[str, dict[int, dict[str, Any]]]] = []
        self._units: str | None = None

    def reset(self) -> None:
        self._cases = []
        self._units = None

    def update(
        self, case_id: str, pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | None = None
    ) -> dict[int, dict[str, Any]]:
        """Score one case (label maps ``(*S)``, spacing in mm, None = unknown: pixels); returns its
        :func:`case_metrics`."""
        units = "voxel" if self.convention == "medpy" else ("px" if spacing is None else "mm")
        if self._units is not None and units != self._units:
            from uncol.errors import DataError

            raise DataError(f"case {case_id!r}: its distances would be in {units} but earlier cases' are in "
                            f"{self._units}; give every case a spacing (e.g. `uncol data import-folder --spacing-csv`) or none")
        self._units = units
        res = case_metrics(pred, gt, self.num_classes, spacing, self.convention)
        self._cases.append((str(case_id), res))
        return res

    def aggregate(self) -> dict[str, Any]:
        fg = range(1, self.num_classes)
        per_case = []
        case_means: dict[str, list[float]] = {m: [] for m in METRICS}
        for case_id, res in self._cases:
            entry = {self.class_names[c]: {**{m: float(res[c][m]) for m in METRICS}, "missed": bool(res[c]["missed"])}
                     for c in fg}
            mean = {m: float(np.mean([res[c][m] for c in fg])) for m in METRICS}
            for m in METRICS:
                case_means[m].append(mean[m])
            per_case.append({"case": case_id, "per_class": entry, "mean": mean})
        per_class: dict[str, Any] = {}
        for c in fg:
            stats = {m: _mean_std([r[c][m] for _, r in self._cases]) for m in METRICS}
            per_class[self.class_names[c]] = {
                **{m: stats[m][0] for m in METRICS},
                "std": {m: stats[m][1] for m in METRICS},
                "missed": int(sum(bool(r[c]["missed"]) for _, r in self._cases)),
            }
        ms = {m: _mean_std(case_means[m]) for m in METRICS}
        return {
            "mean": {m: ms[m][0] for m in METRICS},
            "std": {m: ms[m][1] for m in METRICS},
            "per_class": per_class,
            "per_case": per_case,
            "missed": int(sum(v["missed"] for v in per_class.values())),
            "num_cases": len(self._cases),
            "convention": self.convention,
            "units": self._units or ("mm" if self.convention == "standard" else "voxel"),
        }


def format_table(results: dict[str, dict[str, Any]], digits: int = 2) -> str:
    """Markdown table of several ``metrics.json`` dicts: one row per run (key = row label).

    Columns: for each class (in order of first appearance) Dice %, Jaccard %, HD95, ASD; then the mean
    over classes as ``mean ± std`` over cases, and the ``missed`` count. Distance units per row
    (mm or px for ``"standard"``, voxels for ``"medpy"``) are in the ``conv.`` column.
    """
    classes: list[str] = []
    for res in results.values():
        classes += [c for c in res.get("per_class", {}) if c not in classes]
    show_classes = len(classes) > 1
    head = ["run", "conv."]
    if show_classes:
        for c in classes:
            head += [f"{c} Dice %", f"{c} Jac. %", f"{c} HD95", f"{c} ASD"]
    head += ["Dice %", "Jaccard %", "HD95", "ASD", "missed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def val(x: float | None, pct: bool) -> str:
        if x is None or not np.isfinite(x):
            return "–"
        return f"{100 * x:.{digits}f}" if pct else f"{x:.{digits}f}"

    for name, res in results.items():
        conv = res.get("convention", "standard")
        row = [str(name), f"{conv} ({res.get('units', 'mm' if conv == 'standard' else 'voxel')})"]
        if show_classes:
            for c in classes:
                pc = res.get("per_class", {}).get(c)
                row += [val(pc[m], m in ("dice", "jaccard")) if pc else "–" for m in METRICS]
        for m in METRICS:
            pct = m in ("dice", "jaccard")
            mean, std = res["mean"][m], res.get("std", {}).get(m)
            row.append(val(mean, pct) + (f" ± {val(std, pct)}" if std is not None and np.isfinite(std) else ""))
        row.append(str(res.get("missed", "–")))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
