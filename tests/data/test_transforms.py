"""uncol.data.transforms: normalisation, sizes, and one geometry for image, label and extra maps."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from uncol.config import AugmentConfig, DataConfig
from uncol.data.transforms import (
    ct_window,
    normalize,
    pad_or_crop,
    random_crop,
    random_rotate_flip,
    resize_image,
    resize_label,
    rotation_theta,
    zscore,
)


def test_zscore_clips_outliers_then_standardises() -> None:
    a = np.random.default_rng(0).normal(5, 2, 10_000).astype(np.float32)
    a[0] = 1e6
    z = zscore(a, (0.5, 99.5))
    assert abs(z.mean()) < 1e-4 and abs(z.std() - 1) < 1e-4 and z.max() < 4
    assert z.dtype == np.float32
    assert np.all(zscore(np.full(5, 3.0)) == 0)  # constant image: no division by zero


def test_ct_window_and_registry() -> None:
    hu = np.array([-1000.0, -125.0, 75.0, 275.0, 3000.0])
    np.testing.assert_allclose(ct_window(hu, (-125, 275)), [0, 0, 0.5, 1, 1])
    np.testing.assert_allclose(normalize(hu, DataConfig(normalize="ct")), [0, 0, 0.5, 1, 1])
    assert normalize(hu, DataConfig(normalize="none")).dtype == np.float32


@pytest.mark.parametrize("shape, size", [((1, 20, 30), (8, 16)), ((2, 7, 9, 11), (4, 8, 16))])
def test_resize_shapes_and_label_values(shape: tuple, size: tuple) -> None:
    x = torch.rand(shape)
    assert resize_image(x, size).shape == (shape[0], *size)
    assert resize_image(x[None], size).shape == (1, shape[0], *size)
    y = torch.randint(0, 3, shape[1:], dtype=torch.uint8)
    ry = resize_label(y, size)
    assert ry.shape == size and ry.dtype == torch.uint8 and set(ry.unique().tolist()) <= {0, 1, 2}
    same = torch.arange(12.0).reshape(1, 3, 4)
    assert torch.equal(resize_label(resize_label(torch.arange(12).reshape(3, 4), (6, 8)), (3, 4)), same[0].long())


def test_pad_or_crop_centres() -> None:
    x = torch.arange(6.0).reshape(1, 2, 3)
    p = pad_or_crop(x, (4, 3), value=-1)
    assert p.shape == (1, 4, 3) and torch.equal(p[0, 1:3], x[0]) and (p[0, 0] == -1).all()
    assert torch.equal(pad_or_crop(p, (2, 3)), x)
    c = pad_or_crop(torch.arange(25.0).reshape(5, 5), (3, 3))
    assert c[1, 1] == 12


def test_random_crop_keeps_alignment() -> None:
    g = torch.Generator().manual_seed(0)
    img = torch.arange(10 * 12 * 3.0).reshape(1, 10, 12, 3)
    lab = torch.arange(10 * 12 * 3).reshape(10, 12, 3)
    for _ in range(5):
        pi, pl = random_crop(img, lab, (4, 5, 6), g)  # last dim smaller than the patch: padded
        assert pi.shape == (1, 4, 5, 6) and pl.shape == (4, 5, 6)
        inside = pl > 0
        assert torch.equal(pi[0][inside], pl[inside].float())


def _square(n: int = 32) -> torch.Tensor:
    y = torch.zeros(n, n, dtype=torch.long)
    y[4:12, 6:20] = 1  # off-centre rectangle
    return y


def test_rotation_by_90_degrees_equals_rot90() -> None:
    x = torch.rand(1, 1, 16, 16)
    grid = F.affine_grid(rotation_theta(math.pi / 2, (16, 16)), [1, 1, 16, 16], align_corners=False)
    out = F.grid_sample(x, grid, mode="nearest", align_corners=False)
    assert torch.allclose(out, torch.rot90(x, k=1, dims=(2, 3)))  # counter-clockwise as displayed


def test_rotation_is_right_on_non_square_images() -> None:
    y = torch.zeros(1, 1, 20, 40)
    y[0, 0, 9:11, 5:35] = 1  # horizontal bar through the centre
    grid = F.affine_grid(rotation_theta(math.pi / 2, (20, 40)), [1, 1, 20, 40], align_corners=False)
    out = F.grid_sample(y, grid, mode="nearest", align_corners=False)[0, 0]
    cols = out.nonzero()[:, 1]
    assert cols.min() >= 18 and cols.max() <= 21  # now a vertical bar, clipped by the height


@pytest.mark.parametrize("dims", [2, 3])
def test_label_and_extras_follow_the_image(dims: int) -> None:
    cfg = AugmentConfig(rotate_deg=40.0, flip=True)
    y2 = _square()
    y = y2 if dims == 2 else y2[None].repeat(3, 1, 1)
    img = y[None].float() * 5
    extra = y[None].float()
    changed = 0
    for seed in range(6):
        g = torch.Generator().manual_seed(seed)
        oi, oy, (oe,) = random_rotate_flip(img, y, cfg, g, extras=[extra])
        assert oi.shape == img.shape and oy.shape == y.shape and oy.dtype == torch.long
        agree = ((oi[0] > 2.5).long() == oy).float().mean()
        assert agree > 0.98
        assert ((oe[0] > 0.5).long() == oy).float().mean() > 0.98
        changed += int(not torch.equal(oy, y))
        g2 = torch.Generator().manual_seed(seed)
        assert torch.equal(random_rotate_flip(img, y, cfg, g2)[1], oy)  # seeded: reproducible
    assert changed >= 5


def test_disabled_augmentation_is_identity() -> None:
    y = _square()
    _, oy, _ = random_rotate_flip(y[None].float(), y, AugmentConfig(enabled=False), torch.Generator())
    assert torch.equal(oy, y)


def test_pad_resize_keeps_the_aspect_and_maps_back() -> None:
    from uncol.data.transforms import fit_box, fit_image, fit_label, fitted_spacing, unfit

    assert fit_box((540, 800), (256, 256), "pad") == ((173, 256), (41, 0))  # 540 * 256/800 = 172.8
    assert fit_box((540, 800), (256, 256), "stretch") == ((256, 256), (0, 0))
    y = torch.zeros(54, 80, dtype=torch.uint8)
    y[10:30, 20:50] = 1
    fy = fit_label(y, (64, 64), "pad")
    inner, off = fit_box((54, 80), (64, 64), "pad")
    assert inner == (43, 64) and off == (10, 0)
    assert fy[:10].sum() == 0 and fy[10 + 43:].sum() == 0 and fy.sum() > 0  # margins are background
    x = torch.rand(1, 54, 80) + 3.0
    fx = fit_image(x, (64, 64), "pad")
    assert fx.shape == (1, 64, 64) and torch.allclose(fx[0, 0], fx[0, 10:53].min().expand(64))  # image minimum
    logits = torch.stack([1 - fy.float(), fy.float()])[None]
    assert (unfit(logits, (54, 80), "pad").argmax(1)[0] == y.long()).float().mean() > 0.99
    assert fitted_spacing((0.1, 0.1), (54, 80), (64, 64), "pad") == pytest.approx((0.1 * 54 / 43, 0.125))
