"""Intensity normalisation, resize/pad/crop and random rotation + flips (2D and 3D, torch ops).

Geometric transforms take an image ``(C, *S)``, a label ``(*S)`` (or None) and optional extra
dense maps ``(C', *S)`` and apply the *same* geometry to all of them: images and float maps are
interpolated (bilinear/trilinear), labels and integer maps by nearest neighbour. Randomness comes
only from the ``torch.Generator`` passed in, so a seeded generator reproduces the transform.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from uncol.config import AugmentConfig, DataConfig
from uncol.errors import DataError

# --------------------------------------------------------------------------------------------------
# intensity


def zscore(a: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
    """Clip to the given intensity percentiles of ``a`` (MR/US), then z-score; float32, same shape."""
    a = a.astype(np.float32, copy=False)
    lo, hi = np.percentile(a, percentiles)
    a = np.clip(a, lo, hi)
    std = float(a.std())
    return ((a - float(a.mean())) / (std if std > 1e-8 else 1.0)).astype(np.float32)


def ct_window(a: np.ndarray, window: tuple[float, float] = (-125.0, 275.0)) -> np.ndarray:
    """Clip CT intensities (HU) to ``window`` and scale it to [0, 1] (the SSL4MIS pancreas recipe)."""
    lo, hi = float(window[0]), float(window[1])
    return ((np.clip(a.astype(np.float32, copy=False), lo, hi) - lo) / max(hi - lo, 1e-8)).astype(np.float32)


NORMALIZERS: dict[str, Callable[[np.ndarray, DataConfig], np.ndarray]] = {
    "zscore": lambda a, cfg: zscore(a, cfg.percentiles),
    "ct": lambda a, cfg: ct_window(a, cfg.ct_window),
    "none": lambda a, cfg: a.astype(np.float32, copy=False),
}


def normalize(a: np.ndarray, cfg: DataConfig, source: object = "an image") -> np.ndarray:
    """Normalise a whole image/volume by ``cfg.normalize`` (zscore | ct | none); float32.

    A CT window on intensities already in [0, 1] (e.g. data written by ``uncol data prepare``, which
    scales CT to [0, 1]) would squeeze the image into a sliver of the window: refused, naming ``source``.
    """
    if cfg.normalize == "ct" and a.size and float(a.min()) >= 0.0 and float(a.max()) <= 1.0:
        lo, hi = cfg.ct_window
        raise DataError(f"{source}: intensities are already in [0, 1] but data.normalize is ct (window {lo:g}..{hi:g} HU); "
                        "set data.normalize: none for data prepared in [0, 1] (or zscore)")
    return NORMALIZERS[cfg.normalize](a, cfg)


# --------------------------------------------------------------------------------------------------
# size


def resize_image(x: Tensor, size: Sequence[int], antialias: bool = False) -> Tensor:
    """``(C, *S)`` or ``(B, C, *S)`` float -> same with ``*S = size``; bilinear/trilinear, ``align_corners=False``.

    ``antialias`` (2D downsampling only) is off by default so that training matches inference,
    which resizes with plain ``F.interpolate``.
    """
    batched = x.dim() == len(size) + 2
    xb = x if batched else x[None]
    if tuple(xb.shape[2:]) == tuple(size):
        return x
    mode = "bilinear" if len(size) == 2 else "trilinear"
    aa = antialias and len(size) == 2 and any(s < t for s, t in zip(size, xb.shape[2:]))
    out = F.interpolate(xb.float(), size=tuple(size), mode=mode, align_corners=False, antialias=aa)
    return out if batched else out[0]


def resize_label(y: Tensor, size: Sequence[int]) -> Tensor:
    """``(*S)`` or ``(B, *S)`` integer label -> ``(*size)`` by nearest neighbour (same dtype)."""
    batched = y.dim() == len(size) + 1
    yb = y if batched else y[None]
    if tuple(yb.shape[1:]) == tuple(size):
        return y
    out = F.interpolate(yb[:, None].float(), size=tuple(size), mode="nearest-exact")[:, 0].to(y.dtype)
    return out if batched else out[0]


RESIZE_MODES = ("stretch", "pad")


def fit_box(native: Sequence[int], size: Sequence[int], mode: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Where a ``native``-sized image lies inside the model input of ``size``: ``(inner, offset)``.

    ``"stretch"``: the whole input, ``inner = size``, offset 0 (each axis scaled on its own).
    ``"pad"``: one scale for every axis, ``s = min(size_i / native_i)``, ``inner_i = round(native_i * s)``
    (at least 1), centred: ``offset_i = (size_i - inner_i) // 2``; the rest is padding.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    if mode == "stretch":
        return tuple(int(t) for t in size), (0,) * len(size)
    s = min(t / n for t, n in zip(size, native))
    inner = tuple(min(t, max(1, round(n * s))) for n, t in zip(native, size))
    return inner, tuple((t - i) // 2 for t, i in zip(size, inner))


def _pad_to(x: Tensor, size: Sequence[int], offset: Sequence[int], value: float) -> Tensor:
    pads: list[int] = []
    for s, t, o in zip(reversed(x.shape[-len(size):]), reversed(size), reversed(offset)):
        pads += [o, t - s - o]
    return F.pad(x, pads, value=value) if any(pads) else x


def fit_image(x: Tensor, size: Sequence[int], mode: str = "stretch") -> Tensor:
    """``(C, *S)`` or ``(B, C, *S)`` float -> ``*size``: resized (bilinear/trilinear) per :func:`fit_box`;
    ``"pad"`` fills the margin with each image's minimum (the background of a normalised image)."""
    native = x.shape[-len(size):]
    inner, offset = fit_box(native, size, mode)
    y = resize_image(x, inner)
    if inner == tuple(size):
        return y
    batched = y.dim() == len(size) + 2
    lo = y.flatten(1).amin(1).view(-1, *[1] * (y.dim() - 1)) if batched else y.min()
    inside = _pad_to(torch.ones_like(y), size, offset, 0.0)
    return _pad_to(y, size, offset, 0.0) + (1 - inside) * lo


def fit_label(y: Tensor, size: Sequence[int], mode: str = "stretch") -> Tensor:
    """``(*S)`` or ``(B, *S)`` integer label -> ``*size`` (nearest neighbour), margin 0, as :func:`fit_image`."""
    inner, offset = fit_box(y.shape[-len(size):], size, mode)
    return _pad_to(resize_label(y, inner), size, offset, 0)


def unfit(logits: Tensor, native: Sequence[int], mode: str = "stretch") -> Tensor:
    """Inverse of :func:`fit_image` for model outputs ``(B, K, *size)`` (or ``(K, *size)``): the image's part
    is cropped out of the padding and resized (bilinear/trilinear) back to ``native``."""
    n = len(native)
    inner, offset = fit_box(native, logits.shape[-n:], mode)
    idx = (...,) + tuple(slice(o, o + i) for o, i in zip(offset, inner))
    return resize_image(logits[idx], tuple(native))


def fitted_spacing(spacing: Sequence[float], native: Sequence[int], size: Sequence[int], mode: str) -> tuple[float, ...]:
    """mm per voxel of an image fitted to ``size`` (the spacing of the resized part, per axis)."""
    inner, _ = fit_box(native, size, mode)
    return tuple(float(sp) * n / i for sp, n, i in zip(spacing, native, inner))


def pad_or_crop(x: Tensor, size: Sequence[int], value: float = 0.0) -> Tensor:
    """Centre-pad (with ``value``) and/or centre-crop the last ``len(size)`` dims of ``x`` to ``size``."""
    n = len(size)
    spatial = x.shape[-n:]
    pads: list[int] = []
    for s, t in zip(reversed(spatial), reversed(size)):
        d = max(t - s, 0)
        pads += [d // 2, d - d // 2]
    if any(pads):
        x = F.pad(x, pads, value=value)
    idx = [slice(None)] * (x.dim() - n)
    for s, t in zip(x.shape[-n:], size):
        o = (s - t) // 2
        idx.append(slice(o, o + t))
    return x[tuple(idx)]


def random_crop(
    image: Tensor, label: Tensor | None, size: Sequence[int], generator: torch.Generator
) -> tuple[Tensor, Tensor | None]:
    """A random patch of ``size`` from image ``(C, *S)`` and label ``(*S)``; padded first if smaller
    (image with its minimum, label with 0)."""
    n = len(size)
    target = [max(s, t) for s, t in zip(image.shape[-n:], size)]
    image = pad_or_crop(image, target, float(image.min()))
    label = pad_or_crop(label, target, 0) if label is not None else None
    starts = [int(torch.randint(0, s - t + 1, (1,), generator=generator)) for s, t in zip(target, size)]
    idx = tuple(slice(o, o + t) for o, t in zip(starts, size))
    return image[(slice(None),) + idx], (label[idx] if label is not None else None)


# --------------------------------------------------------------------------------------------------
# augmentation


def rotation_theta(angle_rad: float, spatial: Sequence[int]) -> Tensor:
    """Affine ``theta`` (1, n, n+1) for ``F.affine_grid`` rotating the (H, W) plane by ``angle_rad``
    about the centre, in pixel space (correct for non-square images)."""
    n = len(spatial)
    h, w = spatial[-2], spatial[-1]
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    theta = torch.zeros(1, n, n + 1)
    for i in range(n):
        theta[0, i, i] = 1.0
    # normalised coords (x=W, y=H): u_in = D^-1 R D u_out with D = diag(W, H)
    theta[0, 0, 0], theta[0, 0, 1] = c, -s * h / w
    theta[0, 1, 0], theta[0, 1, 1] = s * w / h, c
    return theta


def _warp(x: Tensor, grid: Tensor, nearest: bool) -> Tensor:
    """``x`` (C, *S) sampled on ``grid`` (1, *S, n)."""
    out = F.grid_sample(
        x[None].float(), grid, mode="nearest" if nearest else "bilinear",
        padding_mode="zeros" if nearest else "border", align_corners=False,
    )[0]
    return out.to(x.dtype)


def random_rotate_flip(
    image: Tensor,
    label: Tensor | None,
    cfg: AugmentConfig,
    generator: torch.Generator,
    extras: Sequence[Tensor] = (),
    with_theta: bool = False,
) -> tuple[Tensor, Tensor | None, list[Tensor]] | tuple[Tensor, Tensor | None, list[Tensor], Tensor]:
    """Rotate by a uniform angle in ``±cfg.rotate_deg`` in the (H, W) plane, then flip each of the
    last two spatial axes with probability 1/2; identical for image ``(C, *S)``, label ``(*S)`` and
    ``extras`` ``(C', *S)``. Float tensors are interpolated (border padding), integer tensors
    (labels) use nearest neighbour with 0 padding. Returns ``(image, label, extras)``, plus with
    ``with_theta`` the whole transform as one ``F.affine_grid`` theta ``(n, n+1)`` (normalised
    coordinates, so it moves a feature map of any resolution the same way: ``out(u) = in(theta u)``)."""
    extras = list(extras)
    n = image.dim() - 1
    if not cfg.enabled:
        eye = torch.cat([torch.eye(n), torch.zeros(n, 1)], 1)
        return (image, label, extras, eye) if with_theta else (image, label, extras)
    u = torch.rand(3, generator=generator)
    angle = math.radians(cfg.rotate_deg) * (2 * float(u[0]) - 1)
    flips = [n - 2 + i for i in range(2) if cfg.flip and float(u[1 + i]) < 0.5]
    items: list[Tensor | None] = [image, None if label is None else label[None], *extras]
    if cfg.rotate_deg > 0 and angle != 0.0:
        grid = F.affine_grid(rotation_theta(angle, image.shape[1:]), [1, 1, *image.shape[1:]], align_corners=False)
        items = [None if t is None else _warp(t, grid, not t.is_floating_point()) for t in items]
    if flips:
        dims = [d + 1 for d in flips]  # + channel dim
        items = [None if t is None else torch.flip(t, dims) for t in items]
    img, lab = items[0], items[1]
    assert img is not None
    out = img, (None if lab is None else lab[0]), [t for t in items[2:] if t is not None]
    if not with_theta:
        return out
    # out(u) = rot(F u) with F the flips: theta = R . F in grid coordinates (x = W, y = H, z = D)
    rot = rotation_theta(angle, image.shape[1:])[0] if cfg.rotate_deg > 0 and angle != 0.0 else \
        torch.cat([torch.eye(n), torch.zeros(n, 1)], 1)
    f = torch.ones(n)
    for d in flips:  # spatial axis d (torch order) is grid coordinate n - 1 - d
        f[n - 1 - d] = -1.0
    theta = rot.clone()
    theta[:, :n] = rot[:, :n] * f[None, :]
    return (*out, theta)
