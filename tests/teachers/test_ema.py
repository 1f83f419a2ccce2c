"""EMA teacher: known arithmetic, buffers copied, warmup, freeze, state dict, frozen copy."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from uncol.teachers.ema import EMA


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))


def _fill(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)


def test_update_known_arithmetic_and_buffers() -> None:
    student = _net()
    _fill(student, 1.0)
    ema = EMA(student, momentum=0.99)
    _fill(student, 3.0)
    student[1].running_mean.fill_(5.0)
    student[1].num_batches_tracked.fill_(7)
    ema.update(student)
    for p in ema.module.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 0.99 * 1.0 + 0.01 * 3.0))  # 1.02
    ema.update(student)
    for p in ema.module.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 0.99 * 1.02 + 0.01 * 3.0))  # 1.0398
    assert torch.equal(ema.module[1].running_mean, torch.full((2,), 5.0))
    assert int(ema.module[1].num_batches_tracked) == 7
    assert int(ema.num_updates) == 2


def test_copy_is_frozen_and_independent() -> None:
    student = _net()
    ema = EMA(student)
    assert all(not p.requires_grad for p in ema.module.parameters())
    assert all(p.requires_grad for p in student.parameters())
    assert not ema.module.training
    ema.train()
    assert not ema.module.training  # train() does not reach the averaged copy
    with torch.no_grad():
        student[0].weight.add_(1.0)
    assert not torch.equal(ema.module[0].weight, student[0].weight)
    x = torch.randn(3, 2)
    torch.testing.assert_close(ema(x), ema.module(x))


def test_warmup_and_freeze() -> None:
    student = _net()
    _fill(student, 0.0)
    ema = EMA(student, momentum=0.99, warmup=True)
    assert ema.current_momentum() == 0.0  # first update copies
    _fill(student, 2.0)
    ema.update(student)
    torch.testing.assert_close(ema.module[0].weight, torch.full((2, 2), 2.0))
    assert ema.current_momentum() == pytest.approx(0.5)  # min(1 - 1/2, 0.99)
    ema.freeze()
    _fill(student, 10.0)
    ema.update(student)
    torch.testing.assert_close(ema.module[0].weight, torch.full((2, 2), 2.0))
    assert int(ema.num_updates) == 1
    ema.freeze(False)
    ema.update(student)
    torch.testing.assert_close(ema.module[0].weight, torch.full((2, 2), 6.0))  # 0.5*2 + 0.5*10


def test_state_dict_roundtrip() -> None:
    student = _net()
    ema = EMA(student)
    _fill(student, 4.0)
    ema.update(student)
    sd = ema.state_dict()
    assert "num_updates" in sd and any(k.startswith("module.") for k in sd)
    other = EMA(_net())
    other.load_state_dict(sd)
    for a, b in zip(ema.module.state_dict().values(), other.module.state_dict().values()):
        assert torch.equal(a, b)
    assert int(other.num_updates) == 1


def test_mismatched_model_raises() -> None:
    ema = EMA(_net())
    with pytest.raises(ValueError, match="parameters"):
        ema.update(nn.Linear(2, 2))
    with pytest.raises(ValueError):
        EMA(_net(), momentum=1.5)


def test_reset_copies_model_and_restarts_count() -> None:
    student = _net()
    ema = EMA(student, warmup=True)
    _fill(student, 2.0)
    ema.update(student)
    _fill(student, 9.0)
    student[1].running_var.fill_(3.0)
    ema.reset(student)
    for a, b in zip(ema.module.state_dict().values(), student.state_dict().values()):
        assert torch.equal(a, b)
    assert int(ema.num_updates) == 0 and ema.current_momentum() == 0.0
    assert all(not p.requires_grad for p in ema.module.parameters())


def test_copy_buffers_off_keeps_own_statistics() -> None:
    student = _net()
    ema = EMA(student, momentum=0.5)
    ema.copy_buffers = False
    ema.module[1].running_mean.fill_(-2.0)
    student[1].running_mean.fill_(5.0)
    _fill(student, 3.0)
    ema.update(student)
    assert torch.equal(ema.module[1].running_mean, torch.full((2,), -2.0))
    for p in ema.module.parameters():  # parameters still follow the student
        assert not torch.equal(p, torch.full_like(p, 3.0))
