"""Evaluate a network on dataset cases and evaluate a checkpoint on a split (``uncol evaluate``).

``predict_paths``/``collect_inputs`` (:mod:`uncol.eval.predict`), ``model_from_checkpoint``/``load_predictor``
(:mod:`uncol.eval.loading`) and ``output_names`` (:mod:`uncol.eval.outputs`) are re-exported here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from uncol.config import Config
from uncol.data.dataset import DatasetSpec
from uncol.data.datasets import load_case
from uncol.data.io import write_like
from uncol.data.splits import Split
from uncol.errors import DataError
from uncol.eval.inference import predict_probs
from uncol.eval.loading import check_image_ndim, load_predictor, model_from_checkpoint
from uncol.eval.metrics import MetricAccumulator
from uncol.eval.outputs import output_names, refuse_collisions, refuse_overlap
from uncol.eval.predict import collect_inputs, predict_paths
from uncol.pseudo.uncertainty import hard_label
from uncol.runtime import atomic_write_json, check_out_dir, resolve_device, staged_output_dir

__all__ = ["checkpoint_and_cases", "collect_inputs", "evaluate_cases", "evaluate_checkpoint", "load_predictor",
           "model_from_checkpoint", "output_names", "predict_paths", "split_case_ids"]


def evaluate_cases(model: nn.Module, spec: Any, case_ids: list[str], cfg: Config, device: torch.device,
                   progress: bool = True, pred_dir: Path | None = None) -> dict[str, Any]:
    """Predict every case at native resolution and score it; returns the ``metrics.json`` dict.

    Distances are in mm from each case's spacing (``eval.convention`` = standard; in px when the files
    store none and none was given, e.g. PNG without a spacing CSV) or in voxels (medpy). ``pred_dir``:
    also write each predicted mask there (as :func:`predict_paths` does, PNG with visible values) with
    the label tables.
    """
    names = [spec.labels[i] for i in sorted(spec.labels)]
    acc = MetricAccumulator(spec.num_classes, names, convention=cfg.eval.convention)
    for cid in tqdm(case_ids, desc="evaluate", disable=not progress, dynamic_ncols=True):
        case = load_case(spec, cid, cfg.data)
        if case.label is None:
            raise DataError(f"case {cid!r} has no label file; evaluate needs labelled cases (use predict instead)")
        probs = predict_probs(model, case.image, cfg, device)
        pred = hard_label(probs, dim=0).numpy().astype(np.int64)
        acc.update(cid, pred, np.asarray(case.label), case.spacing)
        if pred_dir is not None:
            stem, ext, _ = output_names(Path(case.volume.path))
            write_like(pred.astype(np.uint8), case.volume, pred_dir / f"{stem}{ext}", labels=spec.labels)
    if pred_dir is not None:
        from uncol.data.labelmeta import write_label_tables

        write_label_tables(pred_dir, spec.labels)
    return acc.aggregate()


def split_case_ids(spec: Any, split: str, split_file: str | Path) -> list[str]:
    """Case ids of ``split`` (train/val/test/labeled/unlabeled from ``split_file``, or ``all``)."""
    ids = [c.id for c in spec.cases]
    if split != "all":
        sf = Path(split_file)
        if not sf.is_file():
            raise DataError(f"split file {str(sf)!r} not found; pass --split-file or --split all")
        if split not in ("train", "val", "test", "labeled", "unlabeled"):
            raise DataError(f"split {split!r} unknown; use train, val, test, labeled, unlabeled or all")
        ids = list(getattr(Split.load(sf), split))
    if not ids:
        raise DataError(f"split {split!r} is empty; choose another split")
    return ids


def checkpoint_and_cases(checkpoint: str | Path, data: str | Path, split: str, split_file: str | Path | None,
                         device: str) -> tuple[nn.Module, Config, dict, Any, list[str], torch.device]:
    """What ``evaluate``/``uncertainty``/``suggest`` start from: the network of a checkpoint (finite weights),
    its config, the dataset (same labels, a dimensionality the checkpoint predicts) and the case ids of
    ``split`` (from ``split_file``, else ``split.json`` beside the checkpoint)."""
    dev = resolve_device(device)
    model, cfg, ckpt = model_from_checkpoint(checkpoint, dev)
    spec = DatasetSpec.load(Path(data))
    if spec.num_classes != ckpt["num_classes"]:
        raise DataError(f"dataset {str(data)!r} has {spec.num_classes} classes but the checkpoint was trained for "
                        f"{ckpt['num_classes']}; use a dataset with the same labels")
    check_image_ndim(spec.ndim, f"dataset {str(data)!r}", cfg, ckpt, checkpoint)
    ids = split_case_ids(spec, split, split_file or Path(checkpoint).parent / "split.json")
    return model, cfg, ckpt, spec, ids, dev


def guard_out(out: str | Path, data: str | Path) -> Path:
    """``out`` as a Path, checked before anything is read: not the dataset folder ``data``, not inside or
    around it (:func:`refuse_overlap`), and a folder that is or can become writable."""
    outp = Path(out)
    refuse_overlap(outp, "--out", [("--data", data)])
    check_out_dir(outp)
    return outp


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path, out: str | Path, split: str = "test",
                        device: str = "auto", split_file: str | Path | None = None,
                        save_predictions: bool = False) -> dict[str, Any]:
    """``uncol evaluate``: score a checkpoint on a split of a dataset and write ``OUT/metrics.json``
    (and ``OUT/predictions/``); a failed run leaves ``OUT`` as it was (:func:`staged_output_dir`).

    The split comes from ``split_file`` if given, else ``split.json`` beside the checkpoint, else every
    labelled case of the dataset (``--split all``).
    """
    outp = guard_out(out, data)
    model, cfg, _, spec, ids, dev = checkpoint_and_cases(checkpoint, data, split, split_file, device)
    if save_predictions:
        refuse_collisions([spec.case(c).image for c in ids])
    with staged_output_dir(outp) as stage:
        res = evaluate_cases(model, spec, ids, cfg, dev, pred_dir=(stage / "predictions") if save_predictions else None)
        res["checkpoint"] = str(checkpoint)
        res["split"] = split
        atomic_write_json(stage / "metrics.json", res)
    return res
