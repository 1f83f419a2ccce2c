"""Tiny run folders for the output-safety tests: a random small U-Net checkpoint (2D or 3D) beside its
``split.json`` and a dataset of a few cases, built in a second."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image


def make_dataset(root: Path, ndim: int, n: int = 3) -> list[str]:
    """``n`` cases (PNG in 2D, NIfTI in 3D) with a bright block as the class-1 label."""
    (root / "im").mkdir(parents=True)
    training = []
    shape = (24, 32) if ndim == 2 else (12, 16, 20)
    for i in range(n):
        img = np.full(shape, 20, np.uint8)
        img[(slice(4, 12 + i),) * ndim] = 200
        lab = (img > 100).astype(np.uint8)
        if ndim == 2:
            Image.fromarray(img).save(root / "im" / f"c{i}.png")
            Image.fromarray(lab).save(root / "im" / f"c{i}_m.png")
            training.append({"image": f"im/c{i}.png", "label": f"im/c{i}_m.png"})
        else:
            nib.save(nib.Nifti1Image(img.astype(np.float32), np.eye(4)), str(root / "im" / f"c{i}.nii.gz"))
            nib.save(nib.Nifti1Image(lab, np.eye(4)), str(root / "im" / f"c{i}_m.nii.gz"))
            training.append({"image": f"im/c{i}.nii.gz", "label": f"im/c{i}_m.nii.gz"})
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "bg", "1": "fg"}, "training": training}))
    return [f"c{i}" for i in range(n)]


def make_checkpoint(path: Path, data: Path, ndim: int, nan: bool = False) -> Path:
    """A random U-Net checkpoint for ``ndim``-D data (``nan``: one weight set to NaN, a diverged run)."""
    from uncol.config import Config, DataConfig, ModelConfig, to_dict
    from uncol.engine.checkpoint import save_checkpoint
    from uncol.models import build_model

    size = (32, 32) if ndim == 2 else (16, 16, 16)
    cfg = Config(data=DataConfig(root=str(data), spatial_dims=ndim, size=size, mode="whole"),
                 model=ModelConfig(name="unet", params={"feature_chns": [2, 4, 4, 4, 4]}))
    torch.manual_seed(0)
    model = build_model(cfg.model, spatial_dims=ndim, num_classes=2)
    state = model.state_dict()
    if nan:
        first = next(k for k, v in state.items() if v.is_floating_point())
        state[first].view(-1)[0] = float("nan")
    save_checkpoint({"config": to_dict(cfg), "model": state, "spatial_dims": ndim, "num_classes": 2,
                     "labels": {0: "bg", 1: "fg"}}, path)
    return path


@pytest.fixture
def tiny_run() -> Callable[..., tuple[Path, Path]]:
    """``tiny_run(base, ndim=2, nan=False) -> (base/run/best.pt, base/data)``; test split = the last case."""
    from uncol.data.splits import Split

    def make(base: Path, ndim: int = 2, nan: bool = False) -> tuple[Path, Path]:
        ids = make_dataset(base / "data", ndim)
        ckpt = make_checkpoint(base / "run" / "best.pt", base / "data", ndim, nan)
        Split(train=ids[:-1], val=[], test=ids[-1:], labeled=ids[:1], unlabeled=ids[1:-1]).save(base / "run" / "split.json")
        return ckpt, base / "data"

    return make


@pytest.fixture
def tiny_dataset() -> Callable[..., list[str]]:
    """:func:`make_dataset`: ``tiny_dataset(root, ndim, n=3) -> case ids``."""
    return make_dataset


def tree_digest(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file below ``root`` (hidden ones included): byte-identity checks."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def digest() -> Callable[[Path], dict[str, str]]:
    return tree_digest
