"""Evaluate a network on dataset cases, evaluate a checkpoint, and predict files with their geometry."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from uncol.config import Config, from_dict
from uncol.engine.checkpoint import load_checkpoint, load_state_strict
from uncol.engine.io import atomic_write_json
from uncol.errors import DataError
from uncol.eval.inference import predict_probs


def evaluate_cases(model: nn.Module, spec: Any, case_ids: list[str], cfg: Config, device: torch.device,
                   progress: bool = True, pred_dir: Path | None = None) -> dict[str, Any]:
    """Predict every case at native resolution and score it; returns the ``metrics.json`` dict.

    Distances are in mm from each case's spacing (``eval.convention`` = standard; in px when the files
    store none and none was given, e.g. PNG without a spacing CSV) or in voxels (medpy).
    """
    from uncol.data.datasets import load_case
    from uncol.data.io import write_like
    from uncol.eval.metrics import MetricAccumulator

    names = [spec.labels[i] for i in sorted(spec.labels)]
    acc = MetricAccumulator(spec.num_classes, names, convention=cfg.eval.convention)
    for cid in tqdm(case_ids, desc="evaluate", disable=not progress, dynamic_ncols=True):
        case = load_case(spec, cid, cfg.data)
        if case.label is None:
            raise DataError(f"case {cid!r} has no label file; evaluate needs labelled cases (use predict instead)")
        probs = predict_probs(model, case.image, cfg, device)
        pred = probs.argmax(0).numpy().astype(np.int64)
        acc.update(cid, pred, np.asarray(case.label), case.spacing)
        if pred_dir is not None:
            write_like(pred.astype(np.uint8), case.volume, pred_dir / Path(case.volume.path).name)
    return acc.aggregate()


def model_from_checkpoint(path: str | Path, device: torch.device) -> tuple[nn.Module, Config, dict]:
    """Rebuild the inference network from a checkpoint (its config inside) and load it strictly."""
    from uncol.models import build_model

    ckpt = load_checkpoint(path)
    cfg = from_dict(Config, ckpt["config"])
    model = build_model(cfg.model, spatial_dims=ckpt["spatial_dims"], num_classes=ckpt["num_classes"])
    load_state_strict(model, ckpt["model"], f"checkpoint {str(path)!r}")
    return model.to(device).eval(), cfg, ckpt


def split_case_ids(spec: Any, split: str, split_file: str | Path) -> list[str]:
    """Case ids of ``split`` (train/val/test/labeled/unlabeled from ``split_file``, or ``all``)."""
    from uncol.data.splits import Split

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
    """What ``evaluate``/``uncertainty`` start from: the network of a checkpoint, its config, the dataset
    (same labels required) and the case ids of ``split`` (from ``split_file``, else ``split.json`` beside
    the checkpoint)."""
    from uncol.data.dataset import DatasetSpec
    from uncol.engine.setup import resolve_device

    dev = resolve_device(device)
    model, cfg, ckpt = model_from_checkpoint(checkpoint, dev)
    spec = DatasetSpec.load(Path(data))
    if spec.num_classes != ckpt["num_classes"]:
        raise DataError(f"dataset {str(data)!r} has {spec.num_classes} classes but the checkpoint was trained for "
                        f"{ckpt['num_classes']}; use a dataset with the same labels")
    ids = split_case_ids(spec, split, split_file or Path(checkpoint).parent / "split.json")
    return model, cfg, ckpt, spec, ids, dev


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path, out: str | Path, split: str = "test",
                        device: str = "auto", split_file: str | Path | None = None,
                        save_predictions: bool = False) -> dict[str, Any]:
    """``uncol evaluate``: score a checkpoint on a split of a dataset and write ``OUT/metrics.json``.

    The split comes from ``split_file`` if given, else ``split.json`` beside the checkpoint, else every
    labelled case of the dataset (``--split all``).
    """
    from uncol.engine.setup import prepare_out_dir

    model, cfg, _, spec, ids, dev = checkpoint_and_cases(checkpoint, data, split, split_file, device)
    outp = Path(out)
    prepare_out_dir(outp)
    res = evaluate_cases(model, spec, ids, cfg, dev, pred_dir=(outp / "predictions") if save_predictions else None)
    res["checkpoint"] = str(checkpoint)
    res["split"] = split
    atomic_write_json(outp / "metrics.json", res)
    return res


def predict_paths(checkpoint: str | Path, inputs: list[Path], output: str | Path, device: str = "auto",
                  uncertainty: bool = False, probabilities: bool = False) -> list[Path]:
    """``uncol predict``: write a mask (and optionally entropy / probability maps) per input file.

    Outputs keep the input's geometry (NIfTI affine, PNG size). Entropy is in nats, ``[0, ln K]``.
    """
    from uncol.data.datasets import png_spacing
    from uncol.data.io import read_image, write_like
    from uncol.data.transforms import normalize
    from uncol.engine.setup import prepare_out_dir, resolve_device
    from uncol.pseudo.uncertainty import entropy

    dev = resolve_device(device)
    model, cfg, _ = model_from_checkpoint(checkpoint, dev)
    outp = Path(output)
    prepare_out_dir(outp)
    written = []
    for path in tqdm(inputs, desc="predict", dynamic_ncols=True):
        vol = read_image(path, png_spacing=png_spacing(cfg.data))
        img = torch.from_numpy(normalize(np.asarray(vol.array, dtype=np.float32), cfg.data)).unsqueeze(0)
        probs = predict_probs(model, img, cfg, dev)
        name = Path(path).name
        stem, ext = _split_ext(name)
        mask_path = outp / name
        write_like(probs.argmax(0).numpy().astype(np.uint8), vol, mask_path)
        written.append(mask_path)
        if uncertainty:
            ent = entropy(probs.unsqueeze(0), dim=1)[0].numpy().astype(np.float32)
            p = outp / f"{stem}_entropy{ext if ext != '.png' else '.nii.gz'}"
            write_like(ent, vol, p)
            written.append(p)
        if probabilities:
            for k in range(probs.shape[0]):
                p = outp / f"{stem}_prob{k}{ext if ext != '.png' else '.nii.gz'}"
                write_like(probs[k].numpy().astype(np.float32), vol, p)
                written.append(p)
    return written


def _split_ext(name: str) -> tuple[str, str]:
    for ext in (".nii.gz", ".nii", ".png", ".h5"):
        if name.endswith(ext):
            return name[: -len(ext)], ext
    return Path(name).stem, Path(name).suffix
