"""Evaluate a network on dataset cases, evaluate a checkpoint, and predict files with their geometry."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from uncol.config import Config, from_dict
from uncol.data.dataset import DatasetSpec
from uncol.data.datasets import load_case, png_spacing
from uncol.data.io import read_image, write_like
from uncol.data.labelmeta import write_label_tables
from uncol.data.splits import Split
from uncol.data.transforms import normalize
from uncol.errors import DataError
from uncol.eval.inference import predict_probs
from uncol.eval.metrics import MetricAccumulator
from uncol.models import build_model
from uncol.pseudo.uncertainty import entropy
from uncol.runtime import (
    atomic_write_json,
    load_checkpoint,
    load_state_strict,
    prepare_out_dir,
    resolve_device,
)


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
        pred = probs.argmax(0).numpy().astype(np.int64)
        acc.update(cid, pred, np.asarray(case.label), case.spacing)
        if pred_dir is not None:
            stem, ext, _ = output_names(Path(case.volume.path))
            write_like(pred.astype(np.uint8), case.volume, pred_dir / f"{stem}{ext}", labels=spec.labels)
    if pred_dir is not None:
        from uncol.data.labelmeta import write_label_tables

        write_label_tables(pred_dir, spec.labels)
    return acc.aggregate()


def model_from_checkpoint(path: str | Path, device: torch.device) -> tuple[nn.Module, Config, dict]:
    """Rebuild the inference network from a checkpoint (its config inside) and load it strictly."""
    ckpt = load_checkpoint(path)
    cfg = from_dict(Config, ckpt["config"])
    model = build_model(cfg.model, spatial_dims=ckpt["spatial_dims"], num_classes=ckpt["num_classes"])
    load_state_strict(model, ckpt["model"], f"checkpoint {str(path)!r}")
    return model.to(device).eval(), cfg, ckpt


def load_predictor(path: str | Path, device: torch.device) -> tuple[nn.Module, Config, dict]:
    """:func:`model_from_checkpoint`, or for a TorchScript/ONNX file of ``uncol export`` its network, config
    and metadata (``labels``, ``num_classes``, ``spatial_dims``)."""
    from uncol.eval.export import is_exported, load_exported

    if Path(path).is_file() and is_exported(path):
        return load_exported(path, device)
    return model_from_checkpoint(path, device)


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
    """What ``evaluate``/``uncertainty`` start from: the network of a checkpoint, its config, the dataset
    (same labels required) and the case ids of ``split`` (from ``split_file``, else ``split.json`` beside
    the checkpoint)."""
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
    model, cfg, _, spec, ids, dev = checkpoint_and_cases(checkpoint, data, split, split_file, device)
    outp = Path(out)
    prepare_out_dir(outp)
    res = evaluate_cases(model, spec, ids, cfg, dev, pred_dir=(outp / "predictions") if save_predictions else None)
    res["checkpoint"] = str(checkpoint)
    res["split"] = split
    atomic_write_json(outp / "metrics.json", res)
    return res


def predict_paths(checkpoint: str | Path, inputs: list[Path], output: str | Path, device: str = "auto",
                  uncertainty: bool = False, probabilities: bool = False, png_values: str = "visible") -> list[Path]:
    """``uncol predict``: write a mask (and optionally entropy / probability maps) per input.

    ``checkpoint``: a training checkpoint or a file written by ``uncol export`` (TorchScript / ONNX).
    Inputs: NIfTI, PNG, H5, NRRD, MetaImage, DICOM (one ``.dcm`` or a series folder). Outputs keep the
    input's geometry and header (:func:`uncol.data.io.write_like`); a DICOM input gives a ``.nii.gz``
    mask. PNG masks get visible values (``index * 255 // (K - 1)``) unless ``png_values="raw"``.
    The class names and colours go into ``labels.json`` / ``labels_slicer.ctbl`` /
    ``labels_itksnap.txt`` in ``output``. Entropy is in nats, ``[0, ln K]``.
    """
    dev = resolve_device(device)
    model, cfg, ckpt = load_predictor(checkpoint, dev)
    labels = {int(k): str(v) for k, v in (ckpt.get("labels") or {}).items()} or None
    outp = Path(output)
    prepare_out_dir(outp)
    written = write_label_tables(outp, labels) if labels else []
    for path in tqdm(inputs, desc="predict", dynamic_ncols=True):
        vol = read_image(path, png_spacing=png_spacing(cfg.data))
        img = torch.from_numpy(normalize(np.asarray(vol.array, dtype=np.float32), cfg.data, source=path)).unsqueeze(0)
        probs = predict_probs(model, img, cfg, dev)
        stem, mask_ext, map_ext = output_names(Path(path))
        mask_path = outp / f"{stem}{mask_ext}"
        write_like(probs.argmax(0).numpy().astype(np.uint8), vol, mask_path, labels=labels, png_values=png_values)
        written.append(mask_path)
        if uncertainty:
            ent = entropy(probs.unsqueeze(0), dim=1)[0].numpy().astype(np.float32)
            written.append(outp / f"{stem}_entropy{map_ext}")
            write_like(ent, vol, written[-1])
        if probabilities:
            for k in range(probs.shape[0]):
                written.append(outp / f"{stem}_prob{k}{map_ext}")
                write_like(probs[k].numpy().astype(np.float32), vol, written[-1])
    return written


_OUT_EXT = {".dcm": ".nii.gz", "": ".nii.gz", ".nhdr": ".nrrd", ".mhd": ".mha", ".hdf5": ".h5"}


def output_names(path: Path) -> tuple[str, str, str]:
    """``(stem, mask suffix, float-map suffix)`` of the outputs for input ``path``: the input's own format,
    except DICOM (a ``.dcm`` or a series folder) -> ``.nii.gz``, detached headers (``.nhdr``/``.mhd``) ->
    ``.nrrd``/``.mha``, and PNG float maps -> ``.nii.gz``."""
    from uncol.data.io import split_suffix

    stem, ext = split_suffix(path)
    if path.is_dir():
        stem, ext = path.name, ""
    mask_ext = _OUT_EXT.get(ext, ext)
    return stem, mask_ext, ".nii.gz" if mask_ext == ".png" else mask_ext


def collect_inputs(src: str | Path) -> list[Path]:
    """The images ``uncol predict`` segments for ``src``: a file, a DICOM series folder, or a folder of
    images (every NIfTI/PNG/H5/NRRD/MetaImage/DICOM file and every DICOM series sub-folder)."""
    from uncol.data.io import SUFFIXES, split_suffix
    from uncol.data.io_sitk import is_dicom_series

    src = Path(src)
    if src.is_file() or is_dicom_series(src):
        return [src]
    if not src.is_dir():
        raise DataError(f"input {str(src)!r} not found; pass an image file or a folder of images")
    inputs = sorted(p for p in src.iterdir() if not p.name.startswith(".") and
                    ((p.is_file() and split_suffix(p)[1]) or (p.is_dir() and is_dicom_series(p))))
    if not inputs:
        raise DataError(f"input folder {str(src)!r} holds no images ({', '.join(SUFFIXES)} or DICOM series folders)")
    return inputs
