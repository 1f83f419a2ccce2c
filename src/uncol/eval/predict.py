"""``uncol predict``: segment image files with the prompt-free student, writing masks with their geometry.

Order of work, so that a bad input costs nothing: the output folder is checked against the inputs
(:func:`uncol.eval.outputs.refuse_overlap`), the case names against each other, the checkpoint is
loaded (non-finite weights refused), then *every* input is read and checked (readable, 2D/3D as the
checkpoint expects) before the first mask is written; the files go into a temp folder beside the
output folder that replaces its files only when all are written (:func:`uncol.runtime.staged_output_dir`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from uncol.config import Config
from uncol.data.datasets import png_spacing
from uncol.data.io import read_image, write_like
from uncol.data.labelmeta import write_label_tables
from uncol.data.transforms import normalize
from uncol.errors import DataError
from uncol.eval.inference import predict_probs
from uncol.eval.loading import check_image_ndim, load_predictor
from uncol.eval.outputs import planned_outputs, refuse_collisions, refuse_overlap
from uncol.pseudo.uncertainty import entropy, hard_label
from uncol.runtime import check_out_dir, resolve_device, staged_output_dir


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


def _read(path: Path, cfg: Config, meta: dict[str, Any], checkpoint: str | Path) -> tuple[Any, torch.Tensor]:
    """(Volume, normalised image ``(1, *S)``) of one input, checked against the checkpoint."""
    vol = read_image(path, png_spacing=png_spacing(cfg.data))
    check_image_ndim(vol.ndim, path, cfg, meta, checkpoint)
    img = normalize(np.asarray(vol.array, dtype=np.float32), cfg.data, source=path)
    return vol, torch.from_numpy(img).unsqueeze(0)


def predict_paths(checkpoint: str | Path, inputs: list[Path], output: str | Path, device: str = "auto",
                  uncertainty: bool = False, probabilities: bool = False, png_values: str = "visible",
                  input_arg: str | Path | None = None) -> list[Path]:
    """Write a mask per input into ``output`` (and entropy / probability maps in its sub-folders).

    ``checkpoint``: a training checkpoint or a file written by ``uncol export`` (TorchScript / ONNX).
    Inputs: NIfTI, PNG, H5, NRRD, MetaImage, DICOM (one ``.dcm`` or a series folder). Outputs keep the
    input's geometry and header (:func:`uncol.data.io.write_like`); a DICOM input gives a ``.nii.gz``
    mask. PNG masks get visible values (``index * 255 // (K - 1)``) unless ``png_values="raw"``.
    The class names and colours go into ``labels.json`` / ``labels_slicer.ctbl`` / ``labels_itksnap.txt``.
    Entropy maps (nats, ``[0, ln K]``) go to ``output/uncertainty/``, probability maps to
    ``output/probabilities/`` (:mod:`uncol.eval.outputs`). ``input_arg``: the ``--input`` as given (a
    folder), also kept apart from ``output``. Returns the written paths (in ``output``).
    """
    outp = Path(output)
    refuse_overlap(outp, "--output", [("--input", input_arg), *(("--input", p) for p in inputs)])
    refuse_collisions(inputs)
    check_out_dir(outp)
    dev = resolve_device(device)
    model, cfg, meta = load_predictor(checkpoint, dev)
    labels = {int(k): str(v) for k, v in (meta.get("labels") or {}).items()} or None
    for path in tqdm(inputs, desc="check inputs", dynamic_ncols=True, leave=False):
        _read(path, cfg, meta, checkpoint)  # every input is checked before the first mask is written
    n_prob = int(meta["num_classes"]) if probabilities else 0
    written: list[Path] = []
    with staged_output_dir(outp) as stage:
        written += [outp / p.name for p in write_label_tables(stage, labels)] if labels else []
        for path in tqdm(inputs, desc="predict", dynamic_ncols=True):
            vol, img = _read(path, cfg, meta, checkpoint)
            probs = predict_probs(model, img, cfg, dev)
            rel = planned_outputs(path, uncertainty, n_prob)
            write_like(hard_label(probs, dim=0).numpy().astype(np.uint8), vol, stage / rel[0], labels=labels,
                       png_values=png_values)
            maps = ([entropy(probs.unsqueeze(0), dim=1)[0]] if uncertainty else []) + list(probs[:n_prob])
            for r, m in zip(rel[1:], maps):
                write_like(m.numpy().astype(np.float32), vol, stage / r)
            written += [outp / r for r in rel]
    return written
