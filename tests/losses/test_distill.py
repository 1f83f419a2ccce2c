"""DPKD losses: zero when features match (identity projector), positive otherwise; resampling."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from uncol.losses.distill import (
    Projector,
    grid_to_tokens,
    resample_to_grid,
    resample_tokens,
    semantic_distill_loss,
    tokens_to_grid,
    visual_distill_loss,
)


def test_projector_shapes_and_structure() -> None:
    p = Projector(8, 16, hidden=32)
    assert p(torch.randn(2, 5, 8)).shape == (2, 5, 16)
    kinds = [type(m) for m in p.net]
    assert kinds == [nn.Linear, nn.GELU, nn.Linear]
    assert p.net[0].out_features == 32 and Projector(8, 16).net[0].out_features == 16


def test_tokens_grid_roundtrip() -> None:
    x = torch.randn(2, 3, 4, 5)
    t = grid_to_tokens(x)
    assert t.shape == (2, 20, 3)
    assert torch.equal(t[0, 1 * 5 + 2], x[0, :, 1, 2])  # row-major
    assert torch.equal(tokens_to_grid(t, (4, 5)), x)
    with pytest.raises(ValueError):
        tokens_to_grid(t, (4, 4))


@pytest.mark.parametrize("src,dst", [((8, 8), (4, 4)), ((4, 8, 8), (2, 4, 4)), ((4, 4), (4, 4))])
def test_area_resampling(src: tuple[int, ...], dst: tuple[int, ...]) -> None:
    x = torch.randn(1, 2, *src)
    y = resample_to_grid(x, dst)
    assert y.shape == (1, 2, *dst)
    mode = "area"
    torch.testing.assert_close(y, F.interpolate(x, size=dst, mode=mode))
    # token input with its grid
    torch.testing.assert_close(resample_tokens(grid_to_tokens(x), dst, src_grid=src), grid_to_tokens(y))


def test_area_resampling_known_value() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    y = resample_to_grid(x, (2, 2))
    torch.testing.assert_close(y, torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))


@pytest.mark.parametrize("grid,tgrid", [((4, 4), (8, 8)), ((2, 2, 2), (4, 4, 4))])
def test_visual_distill_zero_when_matching(grid: tuple[int, ...], tgrid: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(0)
    d = 6
    teacher = [torch.randn(2, d, *tgrid, generator=g) for _ in range(3)]
    student = [resample_tokens(t, grid) for t in teacher]  # exactly the resampled teacher
    ident = [nn.Identity()] * 3
    assert visual_distill_loss(student, teacher, ident, grid).item() == pytest.approx(0.0, abs=1e-12)
    shifted = [s + 1.0 for s in student]
    assert visual_distill_loss(shifted, teacher, ident, grid).item() == pytest.approx(1.0)
    # with real projectors: positive, differentiable w.r.t. the student and the projectors only
    projs = nn.ModuleList(Projector(4, d) for _ in range(3))
    s = [torch.randn(2, len(student[0][0]), 4, requires_grad=True) for _ in range(3)]
    t_req = [t.clone().requires_grad_(True) for t in teacher]
    loss = visual_distill_loss(s, t_req, projs, grid)
    assert loss.item() > 0
    loss.backward()
    assert s[0].grad is not None and projs[0].net[0].weight.grad is not None
    assert t_req[0].grad is None


def test_visual_distill_pair_count_mismatch() -> None:
    with pytest.raises(ValueError, match="pair"):
        visual_distill_loss([torch.randn(1, 4, 2)], [], [nn.Identity()], (2, 2))


def test_semantic_distill() -> None:
    g = torch.Generator().manual_seed(0)
    fused = torch.randn(2, 64, 5, generator=g)  # 8x8 teacher tokens, width 5
    student = resample_tokens(fused, (4, 4), src_grid=(8, 8))
    assert semantic_distill_loss(student, fused, (8, 8), nn.Identity(), (4, 4)).item() == pytest.approx(0.0, abs=1e-12)
    assert semantic_distill_loss(student * 2 + 0.5, fused, (8, 8), nn.Identity(), (4, 4)).item() > 0
    proj = Projector(3, 5)
    out = semantic_distill_loss(torch.randn(2, 16, 3), fused, (8, 8), proj, (4, 4))
    assert out.ndim == 0 and out.item() > 0
    # fp16 teacher features (cache) are accepted
    semantic_distill_loss(student, fused.half(), (8, 8), nn.Identity(), (4, 4))
