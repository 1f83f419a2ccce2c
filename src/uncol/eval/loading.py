"""The inference network of a checkpoint (or of an ``uncol export`` file), checked before it is used.

- :func:`uncol.runtime.check_finite_state`: a checkpoint whose weights hold NaN/Inf (a diverged run) is
  refused, rather than scored as Dice 0 or written out as empty masks.
- :func:`input_ndims` / :func:`check_image_ndim`: which image dimensionality a checkpoint takes
  (3D models: volumes; 2D ``slices`` models: images and volumes, slice by slice; other 2D models:
  images), and a one-line refusal naming the file otherwise.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from uncol.config import Config, from_dict
from uncol.errors import CheckpointError, DataError
from uncol.models import build_model
from uncol.runtime import check_finite_state, load_checkpoint, load_state_strict


def model_from_checkpoint(path: str | Path, device: torch.device) -> tuple[nn.Module, Config, dict]:
    """Rebuild the inference network from a checkpoint (its config inside) and load it strictly;
    non-finite weights are refused (:func:`uncol.runtime.check_finite_state`)."""
    ckpt = load_checkpoint(path)
    cfg = from_dict(Config, ckpt["config"])
    check_finite_state(ckpt["model"], path)
    model = build_model(cfg.model, spatial_dims=ckpt["spatial_dims"], num_classes=ckpt["num_classes"])
    load_state_strict(model, ckpt["model"], f"checkpoint {str(path)!r}")
    return model.to(device).eval(), cfg, ckpt


def load_predictor(path: str | Path, device: torch.device) -> tuple[nn.Module, Config, dict]:
    """:func:`model_from_checkpoint`, or for a TorchScript/ONNX file of ``uncol export`` its network, config
    and metadata (``labels``, ``num_classes``, ``spatial_dims``); TorchScript weights are checked as well."""
    from uncol.eval.export import is_exported, load_exported

    if Path(path).is_file() and is_exported(path):
        model, cfg, meta = load_exported(path, device)
        if isinstance(model, torch.jit.ScriptModule):
            check_finite_state(model.state_dict(), path)
        return model, cfg, meta
    return model_from_checkpoint(path, device)


def input_ndims(cfg: Config, spatial_dims: int) -> tuple[int, ...]:
    """Image dimensionalities a network with ``spatial_dims`` trained with ``cfg.data`` predicts."""
    if spatial_dims == 3:
        return (3,)
    return (2, 3) if cfg.data.mode == "slices" else (2,)


def check_image_ndim(ndim: int, where: str | Path, cfg: Config, meta: Mapping[str, Any], checkpoint: str | Path) -> None:
    """DataError naming ``where`` (an image file or a dataset folder) when the checkpoint cannot predict
    a ``ndim``-D image, or when its network takes more than the one channel uncol reads."""
    sd = int(meta["spatial_dims"])
    if cfg.model.in_channels != 1:
        raise CheckpointError(f"checkpoint {str(checkpoint)!r} takes {cfg.model.in_channels} input channels but uncol "
                              "reads one channel per image; use a checkpoint trained with model.in_channels: 1")
    if ndim not in input_ndims(cfg, sd):
        kind = "2D images" if sd == 2 else "3D volumes"
        hint = " (or train a 2D model with data.mode: slices)" if sd == 2 else ""
        raise DataError(f"{where}: is {ndim}D but checkpoint {str(checkpoint)!r} is a {sd}D model for {kind}; "
                        f"use a checkpoint trained on {ndim}D data{hint}")
