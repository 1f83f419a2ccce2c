"""Score a folder of predicted masks against a folder of ground-truth masks (``uncol evaluate-masks``).

Files are matched by case name = file name without its suffix (``x.nii.gz``, ``x.nii``, ``x.png``,
``x.h5`` all name case ``x``); other files (``dataset.json``, hidden files) are ignored. Everything
that would make the numbers a guess is a :class:`~uncol.errors.DataError`: a ground truth without a
prediction or the reverse, two files with the same case name in one folder, a shape difference, a
label value outside the declared classes.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from uncol.errors import DataError


def _index(folder: Path, what: str, name_suffix: str = "") -> dict[str, Path]:
    from uncol.data.io import split_suffix

    if not folder.is_dir():
        raise DataError(f"{folder}: {what} folder not found; pass an existing folder of NIfTI/PNG masks")
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        case, suffix = split_suffix(p)
        if not p.is_file() or p.name.startswith(".") or not suffix:
            continue
        if name_suffix:
            if not case.endswith(name_suffix) or case == name_suffix:
                continue
            case = case[: -len(name_suffix)]
        if case in files:
            raise DataError(f"{p}: case {case!r} appears twice in the {what} folder ({files[case].name}); keep one file")
        files[case] = p
    return files


def _match(pred_dir: Path, gt_dir: Path, pred_suffix: str = "", gt_suffix: str = "") -> list[tuple[str, Path, Path]]:
    preds, gts = _index(pred_dir, "prediction", pred_suffix), _index(gt_dir, "ground-truth", gt_suffix)
    if not gts:
        named = f" named '*{gt_suffix}.<ext>'" if gt_suffix else ""
        raise DataError(f"{gt_dir}: no NIfTI/PNG/H5 masks{named} found; point --gt at the folder of ground-truth masks")
    no_pred = sorted(set(gts) - set(preds))
    if no_pred:
        more = f" (and {len(no_pred) - 1} more)" if len(no_pred) > 1 else ""
        raise DataError(f"{gts[no_pred[0]]}: ground truth has no prediction in {pred_dir}{more}; "
                        "predict those cases, remove them from the ground-truth folder, or set --gt-suffix "
                        "(e.g. _mask for 000_HC_mask.png) / --pred-suffix")
    no_gt = sorted(set(preds) - set(gts))
    if no_gt:
        more = f" (and {len(no_gt) - 1} more)" if len(no_gt) > 1 else ""
        raise DataError(f"{preds[no_gt[0]]}: prediction has no ground truth in {gt_dir}{more}; "
                        "add its ground truth or remove the prediction")
    return [(c, preds[c], gts[c]) for c in sorted(gts)]


def _check_values(arr: np.ndarray, path: Path, num_classes: int, declared: bool) -> None:
    bad = np.unique(arr[(arr < 0) | (arr >= num_classes)])
    if bad.size:
        where = "the declared labels" if declared else "the classes found in the ground truth"
        raise DataError(f"{path}: label values {bad[:5].tolist()} are outside {where} 0..{num_classes - 1}; "
                        "declare them in --labels dataset.json or fix the mask")


def evaluate_masks(
    pred_dir: str | Path,
    gt_dir: str | Path,
    labels: Mapping[int, str] | None = None,
    convention: str = "standard",
    png_spacing: float | None = None,
    gt_suffix: str = "",
    pred_suffix: str = "",
    spacing_csv: str | Path | None = None,
) -> dict[str, Any]:
    """Metrics of every prediction in ``pred_dir`` against the same-named mask in ``gt_dir``.

    Args:
        pred_dir, gt_dir: folders of integer masks (NIfTI, PNG or H5), matched by case name.
        labels: ``{index: name}`` with indices ``0..K-1`` (0 = background), e.g. a dataset.json's
            ``labels``. When None, K = 1 + the largest value in any ground-truth mask (at least 2)
            and classes are named ``class_<index>``; a prediction value >= K is then an error too.
            A ``labels.json`` in ``pred_dir`` (written by ``uncol predict``) is used when present.
            PNG masks with visible values (``index * 255 // (K - 1)``) are read back as indices.
        convention: ``"standard"`` (mm) or ``"medpy"`` (voxels), see :mod:`uncol.eval.metrics`.
        png_spacing: mm per pixel for PNG masks (they store no spacing); None: distances in pixels
            (``units: "px"``) unless ``spacing_csv`` gives them per case.
        spacing_csv: per-case pixel sizes (:mod:`uncol.data.spacing`, e.g. HC18's CSV), looked up by
            case name.
        gt_suffix, pred_suffix: a file-name ending that is not part of the case name, removed before
            matching: ``gt_suffix="_mask"`` pairs ``000_HC.png`` with ``000_HC_mask.png``; files
            without it are ignored.

    Returns:
        The ``metrics.json`` dict of :meth:`MetricAccumulator.aggregate`. Distances use the ground
        truth's spacing (a differing prediction spacing only warns).
    """
    from uncol.data.spacing import read_spacing_csv
    from uncol.eval.metrics import MetricAccumulator

    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    pairs = _match(pred_dir, gt_dir, pred_suffix, gt_suffix)
    table = read_spacing_csv(spacing_csv) if spacing_csv is not None else None
    names = _class_names(labels, pred_dir, pairs, png_spacing)
    k = len(names)
    acc = MetricAccumulator(k, [names[c] for c in range(k)], convention)
    for case, p_path, g_path in pairs:
        gt, pred = _read_pair(case, p_path, g_path, k, png_spacing, (table, spacing_csv), labels is not None)
        acc.update(case, pred.array.astype(np.int64), gt.array.astype(np.int64), gt.spacing if gt.spacing_known else None)
    return acc.aggregate()


def _class_names(labels: Mapping[int, str] | None, pred_dir: Path, pairs: list, png_spacing: float | None) -> dict[int, str]:
    from uncol.data.io import read_label

    if labels is not None:
        names = dict(sorted((int(k), str(v)) for k, v in labels.items()))
        if list(names) != list(range(len(names))) or len(names) < 2:
            raise DataError(f"labels {names}: must map indices 0..K-1 (K >= 2, 0 = background) to names")
        return names
    if (pred_dir / "labels.json").is_file():  # written by uncol predict / evaluate --save-predictions
        from uncol.data.labelmeta import read_label_names

        return read_label_names(pred_dir / "labels.json")
    top = max(int(read_label(g, png_spacing).array.max()) for _, _, g in pairs)
    return {0: "background", **{c: f"class_{c}" for c in range(1, max(top, 1) + 1)}}


def _read_pair(case: str, p_path: Path, g_path: Path, k: int, png_spacing: float | None,
               csv_table: tuple[dict | None, Any], declared: bool) -> tuple[Any, Any]:
    """(ground truth, prediction) Volumes, checked; the spacing CSV gives what the ground-truth file lacks."""
    from uncol.data.io import read_label
    from uncol.data.io_write import visible_to_index
    from uncol.data.spacing import spacing_for

    table, csv_path = csv_table
    gt = read_label(g_path, png_spacing)
    if table is not None and not gt.spacing_known:
        gt.spacing, gt.spacing_known = spacing_for(table, case, gt.ndim, csv_path), True
    pred = read_label(p_path, png_spacing, spacing=gt.spacing if gt.spacing_known else None)
    for m in (gt, pred):  # PNG masks written with visible values (uncol predict) back to indices
        idx = visible_to_index(m.array, k) if m.path.suffix.lower() == ".png" else None
        m.array = m.array if idx is None else idx
    if pred.shape != gt.shape:
        raise DataError(f"{p_path}: prediction shape {pred.shape} differs from ground truth {g_path.name} "
                        f"shape {gt.shape}; predictions must be on the ground-truth grid (resample them)")
    if gt.ndim not in (2, 3):
        raise DataError(f"{g_path}: mask is {gt.ndim}D with shape {gt.shape}; only 2D and 3D masks are scored")
    _check_values(gt.array, g_path, k, declared)
    _check_values(pred.array, p_path, k, declared)
    if gt.spacing_known and not np.allclose(pred.spacing, gt.spacing, rtol=1e-3):
        warnings.warn(f"{p_path}: spacing {pred.spacing} differs from ground truth {gt.spacing}; "
                      "distances use the ground truth's", stacklevel=3)
    return gt, pred


def check_metrics_out(out: str | Path, inputs: list[tuple[str, str | Path | None]]) -> None:
    """DataError (before anything is read) when ``--out`` is an existing folder, or is, or lies inside, one of
    ``inputs`` (``(flag, path)``: the prediction and ground-truth folders, the labels and spacing files)."""
    from uncol.eval.outputs import refuse_overlap

    out = Path(out)
    if out.is_dir():
        raise DataError(f"--out {str(out)!r} is a folder; evaluate-masks writes one JSON file, so pass a file name "
                        f"such as {str(out / 'metrics.json')!r}")
    refuse_overlap(out, "--out", inputs)


def write_metrics(metrics: Mapping[str, Any], path: str | Path) -> None:
    """Write a ``metrics.json`` atomically (no partial file on failure)."""
    from uncol.runtime import atomic_write_json

    atomic_write_json(Path(path), dict(metrics))
