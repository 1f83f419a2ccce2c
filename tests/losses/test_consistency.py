"""Consistency losses of MT, UA-MT and URPC: known values."""
from __future__ import annotations

import math

import pytest
import torch

from uncol.losses.consistency import (
    softmax_mse,
    uamt_consistency,
    uamt_uncertainty,
    urpc_consistency,
    urpc_rectification,
)


def test_softmax_mse() -> None:
    z = torch.zeros(1, 2, 3)  # softmax = 0.5
    p = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]).unsqueeze(0)
    assert softmax_mse(z, p).item() == pytest.approx(0.25)
    assert softmax_mse(z, torch.full((1, 2, 3), 0.5)).item() == 0.0


def test_uamt_mask_and_uncertainty() -> None:
    mc = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(2, 1, 2, 1).expand(2, 1, 2, 2).clone()
    mc[:, :, :, 1] = torch.tensor([0.9, 0.1])  # second pixel: agreeing passes
    u = uamt_uncertainty(mc)
    h = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    torch.testing.assert_close(u, torch.tensor([[math.log(2), h]]))
    z = torch.zeros(1, 2, 2)  # student 0.5 / 0.5
    teacher = mc.mean(0)
    # only pixel 1 is certain (h < tau < ln 2): (0.4^2 + 0.4^2) / (2 * 1)
    loss = uamt_consistency(z, teacher, u, tau=0.6)
    assert loss.item() == pytest.approx(0.16)
    assert uamt_consistency(z, teacher, u, tau=0.0).item() == 0.0


def test_urpc_rectification_known_kl() -> None:
    p_mean = torch.tensor([0.5, 0.5]).view(1, 2, 1)
    p_s = torch.tensor([0.25, 0.75]).view(1, 2, 1)
    kl = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # KL(p_mean || p_s) = 0.1438
    variance, w = urpc_rectification(p_s, p_mean)
    assert variance.shape == (1, 1, 1)
    assert variance.item() == pytest.approx(kl)
    assert w.item() == pytest.approx(math.exp(-kl))


def test_urpc_consistency_known_value_and_zero() -> None:
    # identical scales -> 0
    z = torch.randn(2, 3, 8, 8)
    assert urpc_consistency([z, z.clone(), z.clone()]).item() == pytest.approx(0.0, abs=1e-7)
    # two constant scales with probs (0.25, 0.75) and (0.75, 0.25): mean 0.5, equal KLs and weights
    a = torch.log(torch.tensor([0.25, 0.75])).view(1, 2, 1, 1).expand(1, 2, 2, 2)
    b = torch.log(torch.tensor([0.75, 0.25])).view(1, 2, 1, 1).expand(1, 2, 2, 2)
    kl = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    w = math.exp(-kl)
    expected = (0.25**2 * w) / w + kl  # (mean(dist * w) / mean(w)) + mean(D), same for both scales
    assert urpc_consistency([a, b]).item() == pytest.approx(expected, rel=1e-5)


def test_urpc_upsamples_scales_2d_3d() -> None:
    assert urpc_consistency([torch.randn(1, 2, 8, 8), torch.randn(1, 2, 4, 4)]).item() > 0
    zs = [torch.randn(1, 2, 8, 8, 8, requires_grad=True), torch.randn(1, 2, 4, 4, 4, requires_grad=True)]
    loss = urpc_consistency(zs)
    loss.backward()
    assert zs[1].grad is not None and torch.isfinite(zs[1].grad).all()
    with pytest.raises(ValueError):
        urpc_consistency([zs[0]])
