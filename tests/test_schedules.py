"""Known answers for ramps, thresholds and the poly learning rate at t = 0, T/2, T."""
from __future__ import annotations

import math

import pytest

from uncol.schedules import (
    poly_lr,
    sigmoid_rampup,
    uamt_threshold,
    uapl_threshold,
)


def test_sigmoid_rampup() -> None:
    assert sigmoid_rampup(0, 100) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(50, 100) == pytest.approx(math.exp(-1.25))
    assert sigmoid_rampup(100, 100) == 1.0
    assert sigmoid_rampup(250, 100) == 1.0
    assert sigmoid_rampup(-3, 100) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(7, 0) == 1.0


@pytest.mark.parametrize("c", [2, 3, 5])
def test_uapl_threshold(c: int) -> None:
    ln_c = math.log(c)
    assert uapl_threshold(0, 1000, c) == pytest.approx((0.75 + 0.25 * math.exp(-5)) * ln_c)
    assert uapl_threshold(500, 1000, c) == pytest.approx((0.75 + 0.25 * math.exp(-1.25)) * ln_c)
    assert uapl_threshold(1000, 1000, c) == pytest.approx(ln_c)
    assert uapl_threshold(1000, 1000, c, normalized=True) == pytest.approx(1.0)
    assert uapl_threshold(0, 1000, c, normalized=True) == pytest.approx(0.75 + 0.25 * math.exp(-5))


def test_uamt_threshold_binary() -> None:
    assert uamt_threshold(0, 6000) == pytest.approx((0.75 + 0.25 * math.exp(-5)) * math.log(2))
    assert uamt_threshold(6000, 6000) == pytest.approx(math.log(2))
    assert uamt_threshold(3000, 6000, num_classes=4) == pytest.approx((0.75 + 0.25 * math.exp(-1.25)) * math.log(4))


def test_poly_lr() -> None:
    assert poly_lr(0.01, 0, 100) == pytest.approx(0.01)
    assert poly_lr(0.01, 50, 100) == pytest.approx(0.01 * 0.5**0.9)
    assert poly_lr(0.01, 100, 100) == 0.0
    assert poly_lr(0.01, 150, 100) == 0.0
