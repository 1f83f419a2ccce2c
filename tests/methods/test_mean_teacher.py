"""Mean Teacher: zero consistency for identical models, the EMA step in after_step, the ramp, the teacher mode."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from uncol.config import Config, from_dict
from uncol.data.sampler import Batch
from uncol.methods.base import MethodContext
from uncol.methods.mean_teacher import MeanTeacher, MeanTeacherParams, input_noise


def _method(model: nn.Module, **params) -> MeanTeacher:
    cfg = from_dict(Config, {"method": {"name": "mean_teacher", "params": params}, "train": {"iterations": 100}})
    ctx = MethodContext(cfg=cfg, model=model, teacher=None, num_classes=2, spatial_dims=2)
    return MeanTeacher(ctx, from_dict(MeanTeacherParams, params))


def _batch(seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(labeled={"image": torch.randn(2, 1, 8, 8, generator=g), "label": torch.randint(0, 2, (2, 8, 8), generator=g)},
                 unlabeled={"image": torch.randn(2, 1, 8, 8, generator=g)})


def test_consistency_is_zero_when_student_equals_teacher() -> None:
    torch.manual_seed(0)
    m = _method(nn.Conv2d(1, 2, 1), noise_std=0.0)
    out = m.train_step(_batch(), it=50, total=100)
    assert out.parts["consistency"] < 1e-12
    assert torch.isfinite(out.loss)
    noisy = _method(nn.Conv2d(1, 2, 1), noise_std=0.1).train_step(_batch(), it=50, total=100)
    assert noisy.parts["consistency"] > 0  # the teacher's input noise makes them differ


def test_ema_update_happens_in_after_step_only() -> None:
    torch.manual_seed(0)
    m = _method(nn.Conv2d(1, 2, 1), ema_warmup=False)
    before = {k: v.clone() for k, v in m.ema.module.state_dict().items()}
    out = m.train_step(_batch(), it=0, total=100)
    out.loss.backward()
    with torch.no_grad():
        for p in m.student.parameters():
            p -= 0.5 * p.grad
    assert all(torch.equal(before[k], v) for k, v in m.ema.module.state_dict().items())  # train_step leaves it
    m.after_step(0, 100)
    for name, p in m.student.named_parameters():
        expected = 0.99 * before[name] + 0.01 * p.detach()
        torch.testing.assert_close(m.ema.module.state_dict()[name], expected)


def test_ema_warmup_first_update_copies_the_student() -> None:
    torch.manual_seed(0)
    m = _method(nn.Conv2d(1, 2, 1))  # default: alpha_t = min(1 - 1/(t+1), 0.99) -> alpha_0 = 0
    with torch.no_grad():
        m.student.weight.add_(1.0)
    m.after_step(0, 100)
    assert torch.equal(m.ema.module.weight, m.student.weight)


def test_consistency_weight_ramp() -> None:
    m = _method(nn.Conv2d(1, 2, 1))
    assert m.consistency_weight(0, 100) == pytest.approx(0.1 * math.exp(-5))
    assert m.consistency_weight(20, 100) == pytest.approx(0.1 * math.exp(-1.25))  # half of 40 % of 100
    assert m.consistency_weight(40, 100) == pytest.approx(0.1)
    m2 = _method(nn.Conv2d(1, 2, 1), consistency=1.0, consistency_rampup=10)
    assert m2.consistency_weight(5, 1000) == pytest.approx(math.exp(-1.25))


class _Recorder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)
        self.calls: list[tuple[torch.Tensor, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((x.detach().clone(), self.training))
        return self.conv(x)


def test_teacher_pass_is_noisy_in_train_mode_and_restored() -> None:
    torch.manual_seed(0)
    m = _method(_Recorder())
    b = _batch()
    m.train_step(b, 0, 100)
    ((x, training),) = m.ema.module.calls
    assert training and not m.ema.module.training
    delta = x - b.unlabeled["image"]
    assert delta.abs().max() <= 0.2 + 1e-6 and delta.abs().max() > 0


def test_input_noise_is_clipped() -> None:
    torch.manual_seed(0)
    x = torch.zeros(10_000)
    n = input_noise(x, std=0.1, clip=0.2)
    assert n.abs().max() <= 0.2 and (n.abs() == 0.2).any()  # ~4.6 % of N(0, 0.1) lies beyond 0.2
    assert torch.equal(input_noise(x, std=0.0, clip=0.2), x)
