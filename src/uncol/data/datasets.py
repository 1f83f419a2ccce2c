"""Training datasets (cached in memory) and evaluation cases at native resolution.

Modes (``DataConfig.mode``):

- ``whole``: each case resized once at load to ``cfg.size`` (image bilinear/trilinear, label nearest);
  the files' dimensionality must equal ``cfg.spatial_dims``. ``cfg.resize``: ``stretch`` scales each
  axis on its own; ``pad`` keeps the aspect ratio (one scale, the margin padded with the image's
  minimum and label 0; :func:`uncol.data.transforms.fit_box`); predictions are cropped and resized back.
- ``patch``: native-size normalised cases cached; training samples a random ``cfg.size`` patch
  (padded where the case is smaller); without ``train`` the centre patch.
- ``slices``: 3D volumes served as 2D slices along ``cfg.slice_axis`` (an axis of the torch-order
  ``(D, H, W)`` array, so 0 = the NIfTI z axis), every slice included, each resized to ``cfg.size``
  (or fitted, as ``whole``) when served (``cfg.spatial_dims`` must be 2).

Normalisation (``cfg.normalize``) is per whole case at native size, the same in :func:`load_case`.
A sample is ``{"image": (1, *S) float32, "label": (*S) int64 (labelled only), "case": str,
"spacing": (ndim,) float64 mm of the served voxels, "index": int}``.

Evaluation at native size: ``load_case`` gives the normalised native image; for ``whole`` use
``to_model_size`` before the model and ``from_model_size`` on its logits, for ``slices`` use
``volume_to_slices`` / ``slices_to_volume``; ``patch`` models run sliding-window at native size.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from uncol.config import DataConfig
from uncol.data.dataset import CaseRef, DatasetSpec
from uncol.data.io import Volume, check_pair, read_image, read_label
from uncol.data.transforms import (
    RESIZE_MODES,
    fit_image,
    fit_label,
    fitted_spacing,
    normalize,
    pad_or_crop,
    random_crop,
    random_rotate_flip,
    resize_image,
    unfit,
)
from uncol.errors import ConfigError, DataError


@dataclass
class EvalCase:
    """One case for evaluation: ``image`` (1, *S) normalised at native size, ``label`` (*S) integer
    array or None, ``ref`` the image Volume (geometry for writing predictions; spacing in mm)."""

    case: str
    image: Tensor
    label: np.ndarray | None
    ref: Volume

    @property
    def spacing(self) -> tuple[float, ...] | None:
        """mm per voxel, or None when the file stores none and none was given (distances in pixels)."""
        return self.ref.spacing if self.ref.spacing_known else None

    @property
    def volume(self) -> Volume:
        """Alias of ``ref``."""
        return self.ref


def _read_case(
    spec: DatasetSpec, ref: CaseRef, cfg: DataConfig, with_label: bool
) -> tuple[Volume, np.ndarray, Volume | None]:
    """(image Volume, normalised float32 array, label Volume or None), checked."""
    image = read_image(ref.image, png_spacing(cfg), spacing=ref.spacing)
    label = None
    if with_label:
        if ref.label is None:
            raise DataError(f"{ref.image}: case {ref.id!r} has no label but is used as labelled; add one to dataset.json")
        label = read_label(ref.label, png_spacing(cfg), spacing=ref.spacing)
        check_pair(image, label)
        top = int(label.array.max())
        if top >= spec.num_classes:
            raise DataError(
                f"{ref.label}: label value {top} is outside the classes 0..{spec.num_classes - 1} declared in "
                f"{spec.root / 'dataset.json'}; fix the mask or add the class to 'labels'"
            )
    return image, normalize(image.array, cfg, source=ref.image), label


def png_spacing(cfg: DataConfig) -> float | None:
    """``data.png_spacing`` as given, or None for the default 1.0, which means "not given": PNG
    distances are then in pixels and labelled so (a dataset.json ``spacing`` per case wins)."""
    return None if cfg.png_spacing == 1.0 else float(cfg.png_spacing)


def load_case(spec: DatasetSpec, case_id: str, cfg: DataConfig, with_label: bool = True) -> EvalCase:
    """Read one case at native resolution for evaluation (label None when the case has none)."""
    ref = spec.case(case_id)
    image, arr, label = _read_case(spec, ref, cfg, with_label and ref.label is not None)
    return EvalCase(ref.id, torch.from_numpy(arr)[None], None if label is None else label.array, image)


def to_model_size(image: Tensor, cfg: DataConfig) -> Tensor:
    """Fit ``(C, *S)`` or ``(B, C, *S)`` to ``cfg.size`` (bilinear/trilinear; ``cfg.resize`` stretch or pad),
    as ``whole`` mode trains."""
    return fit_image(image, cfg.size, cfg.resize)


def from_model_size(logits: Tensor, size: Sequence[int], resize: str = "stretch") -> Tensor:
    """Logits ``(B, K, *s)`` (or ``(K, *s)``) back to the native ``size`` (bilinear/trilinear); ``resize``
    as the input was fitted (``pad``: the padding is cropped off first)."""
    return unfit(logits, tuple(size), resize)


def volume_to_slices(image: Tensor, axis: int, size: Sequence[int] | None = None) -> Tensor:
    """``(C, D, H, W)`` -> ``(N, C, h, w)``: the 2D slices along spatial ``axis`` (0..2), resized to ``size``."""
    s = image.movedim(axis + 1, 0)
    return resize_image(s, size) if size is not None else s


def slices_to_volume(logits: Tensor, axis: int, native: Sequence[int]) -> Tensor:
    """``(N, K, h, w)`` slice logits -> ``(K, *native)``: resized to the native in-plane size and stacked."""
    plane = [n for i, n in enumerate(native) if i != axis]
    return resize_image(logits, plane).movedim(0, axis + 1)


class SegmentationDataset(Dataset):
    """Cases ``case_ids`` of ``spec`` served per ``cfg.mode`` (see the module docstring).

    ``train``: random patches (``patch``) and augmentation (``cfg.augment``). ``labeled``: include
    ``label``. ``__getitem__(i)`` draws its randomness from torch's global RNG; ``get_seeded(i, seed)``
    is reproducible (the :class:`~uncol.data.sampler.TwoStreamLoader` uses it for exact resume).
    """

    def __init__(self, spec: DatasetSpec, case_ids: Sequence[str], cfg: DataConfig, train: bool, labeled: bool) -> None:
        if not case_ids:
            raise DataError(f"{spec.root / 'dataset.json'}: no cases for this dataset part; check the split")
        self.spec, self.cfg, self.train, self.labeled = spec, cfg, train, labeled
        self.keep_base = False  # set by methods whose cached teacher needs the un-augmented image
        self.case_ids = list(case_ids)
        file_dims = spec.ndim
        if cfg.resize not in RESIZE_MODES:
            raise ConfigError(f"config key 'data.resize' must be one of {', '.join(RESIZE_MODES)}, got {cfg.resize!r}")
        if cfg.mode == "slices":
            if file_dims != 3 or cfg.spatial_dims != 2:
                raise ConfigError(
                    f"config key 'data.mode'=slices needs 3D files and data.spatial_dims 2 (files are {file_dims}D, "
                    f"spatial_dims {cfg.spatial_dims}); use mode whole or patch"
                )
        elif file_dims != cfg.spatial_dims:
            raise ConfigError(
                f"config key 'data.spatial_dims' is {cfg.spatial_dims} but {spec.root} holds {file_dims}D files; "
                "set it to match (or use data.mode slices for 2D models on 3D volumes)"
            )
        self.images: list[Tensor] = []  # (1, *S) float32: at cfg.size (whole) or native
        self.labels: list[Tensor | None] = []  # (*S) small integer type
        self.spacings: list[Tensor] = []  # (ndim,) of the cached array
        self.items: list[tuple[int, int]] = []  # (case position, slice index or -1)
        for i, cid in enumerate(self.case_ids):
            vol, arr, lab = _read_case(spec, spec.case(cid), cfg, labeled)
            img = torch.from_numpy(arr)[None]
            y = None if lab is None else torch.from_numpy(lab.array.astype(np.int16 if lab.array.max() > 255 else np.uint8))
            sp = torch.tensor(vol.spacing, dtype=torch.float64)
            if cfg.mode == "whole":
                sp = torch.tensor(fitted_spacing(vol.spacing, vol.shape, cfg.size, cfg.resize), dtype=torch.float64)
                img = fit_image(img, cfg.size, cfg.resize).contiguous()
                y = None if y is None else fit_label(y, cfg.size, cfg.resize).contiguous()
            self.images.append(img)
            self.labels.append(y)
            self.spacings.append(sp)
            n_slices = vol.shape[cfg.slice_axis] if cfg.mode == "slices" else 0
            self.items += [(i, j) for j in range(n_slices)] if n_slices else [(i, -1)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.get_seeded(index, int(torch.randint(0, 2**62, (1,))))

    def get_seeded(self, index: int, seed: int) -> dict:
        """Sample ``index`` with its random patch/augmentation drawn from ``seed``."""
        g = torch.Generator().manual_seed(int(seed))
        ci, j = self.items[index]
        cfg = self.cfg
        img, y, sp = self.images[ci], self.labels[ci], self.spacings[ci]
        if cfg.mode == "slices":
            ax = cfg.slice_axis
            keep = [k for k in range(3) if k != ax]
            native = [img.shape[1 + k] for k in keep]
            img = fit_image(img.select(ax + 1, j), cfg.size, cfg.resize)
            y = None if y is None else fit_label(y.select(ax, j), cfg.size, cfg.resize)
            sp = torch.tensor(fitted_spacing([float(sp[k]) for k in keep], native, cfg.size, cfg.resize),
                              dtype=torch.float64)
        elif cfg.mode == "patch":
            if self.train:
                img, y = random_crop(img, y, cfg.size, g)
            else:
                img = pad_or_crop(img, cfg.size, float(img.min()))
                y = None if y is None else pad_or_crop(y, cfg.size, 0)
        base, theta = img, None
        if self.train:
            img, y, _, theta = random_rotate_flip(img, y, cfg.augment, g, with_theta=True)
        sample = {"image": img.float().contiguous(), "case": self.case_ids[ci], "spacing": sp.clone(), "index": index}
        if self.keep_base and cfg.mode != "patch":
            # the un-augmented image and the augmentation as one affine theta, so that cached teacher
            # features of ``base_image`` can be moved like the image (uncol.teachers.cache.warp_embedding)
            sample["base_image"] = base.float().contiguous()
            eye = torch.cat([torch.eye(img.dim() - 1), torch.zeros(img.dim() - 1, 1)], 1)
            sample["aug_theta"] = theta if theta is not None else eye
        if self.labeled and y is not None:
            sample["label"] = y.long().contiguous()
        return sample

    def slice_of(self, index: int) -> tuple[str, int]:
        """(case id, slice index or -1) of sample ``index``."""
        ci, j = self.items[index]
        return self.case_ids[ci], j
