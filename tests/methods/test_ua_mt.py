"""UA-MT: the uncertainty mask on a controlled teacher output, the MC passes, the masked consistency."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from uncol.config import Config, from_dict
from uncol.data.sampler import Batch
from uncol.errors import ConfigError
from uncol.methods.base import MethodContext
from uncol.methods.ua_mt import UAMT, UAMTParams

# Teacher logits at 4 pixels (K = 2) and their entropies in units of ln 2:
#   [0, 0]      p = (0.5, 0.5)  U = 1          (uncertain)
#   [10, -10]   p ~ (1, 0)      U ~ 0          (certain)
#   [0, ln 3]   p = (.25, .75)  U = 0.8113     (certain only once tau reaches ln 2)
#   [0, ln 9]   p = (.1, .9)    U = 0.4690     (certain)
TEACHER = torch.tensor([[0.0, 10.0, 0.0, 0.0], [0.0, -10.0, math.log(3), math.log(9)]]).view(1, 2, 1, 4)


class _Fixed(nn.Module):
    """Ignores its input: the same logits (1, K, 1, 4) for every image (noise and dropout do nothing)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits.clone())
        self.calls: list[tuple[torch.Tensor, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((x.detach().clone(), self.training))
        return self.logits.expand(x.shape[0], -1, -1, -1)


def _method(model: nn.Module, **params) -> UAMT:
    cfg = from_dict(Config, {"method": {"name": "ua_mt", "params": params}, "train": {"iterations": 100}})
    ctx = MethodContext(cfg=cfg, model=model, teacher=None, num_classes=2, spatial_dims=2)
    return UAMT(ctx, from_dict(UAMTParams, params))


def _batch() -> Batch:
    return Batch(labeled={"image": torch.randn(1, 1, 1, 4), "label": torch.zeros(1, 1, 4, dtype=torch.long)},
                 unlabeled={"image": torch.randn(1, 1, 1, 4)})


def test_mc_uncertainty_is_the_entropy_of_the_teacher() -> None:
    m = _method(_Fixed(TEACHER))
    u = m.mc_uncertainty(torch.zeros(1, 1, 1, 4))[0, 0] / math.log(2)
    torch.testing.assert_close(u, torch.tensor([1.0, 0.0, 0.8113, 0.4690]), atol=1e-4, rtol=0)


@pytest.mark.parametrize("it,certain,expected", [
    (0, [False, True, False, True], (0.5 + 0.32) / (2 * 2)),  # tau = (0.75 + 0.25 e^-5) ln 2
    (100, [False, True, True, True], (0.5 + 0.125 + 0.32) / (2 * 3)),  # tau = ln 2
])
def test_mask_and_masked_consistency(it: int, certain: list[bool], expected: float) -> None:
    m = _method(_Fixed(torch.zeros(1, 2, 1, 4)))  # student: p = (0.5, 0.5) everywhere
    with torch.no_grad():
        m.ema.module.logits.copy_(TEACHER)
    out = m.train_step(_batch(), it, 100)
    assert out.parts["certain"] == pytest.approx(sum(certain) / 4)
    # sum over certain pixels of sum_c (0.5 - p_c)^2, divided by K * (number of certain pixels):
    # pixel 1: 2 * 0.5^2 = 0.5, pixel 2: 2 * 0.25^2 = 0.125, pixel 3: 2 * 0.4^2 = 0.32
    assert out.parts["consistency"] == pytest.approx(expected, abs=1e-6)
    assert out.parts["tau"] == pytest.approx((0.75 + 0.25 * math.exp(-5 * (1 - it / 100) ** 2)) * math.log(2))


def test_teacher_passes_are_noisy_stochastic_and_counted() -> None:
    torch.manual_seed(0)
    m = _method(_Fixed(TEACHER), mc_passes=4)
    b = _batch()
    m.train_step(b, 0, 100)
    calls = m.ema.module.calls
    assert len(calls) == 1 + 4  # the consistency target + T Monte-Carlo passes
    assert all(training for _, training in calls) and not m.ema.module.training
    for x, _ in calls:
        d = (x - b.unlabeled["image"]).abs()
        assert 0 < d.max() <= 0.2 + 1e-6


def test_mc_passes_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="mc_passes"):
        _method(_Fixed(TEACHER), mc_passes=0)
