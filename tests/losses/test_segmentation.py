"""Masked Dice / CE: known values, masked-out voxels have no influence, empty masks give 0."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from uncol.losses.segmentation import ce_loss, dice_loss, sup_loss


def _batch(spatial: tuple[int, ...], k: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, k, *spatial, generator=g)
    target = torch.randint(0, k, (2, *spatial), generator=g)
    return logits, target


def test_dice_perfect_and_known_value() -> None:
    target = torch.tensor([[0, 1, 1, 0]])
    probs = F.one_hot(target, 2).movedim(-1, 1).float()
    assert dice_loss(probs, target, softmax=False).item() == pytest.approx(0.0, abs=1e-6)
    # class 1 predicted 0.5 everywhere: inter = 1, z = 4 * 0.25 = 1, y = 2 -> dice_1 = 2/3; class 0 the same
    half = torch.full((1, 2, 4), 0.5)
    assert dice_loss(half, target, softmax=False).item() == pytest.approx(1 - 2 / 3, rel=1e-6)


def test_ce_known_value() -> None:
    logits = torch.zeros(1, 4, 3)
    target = torch.tensor([[0, 1, 2]])
    assert ce_loss(logits, target).item() == pytest.approx(math.log(4))


@pytest.mark.parametrize("spatial", [(6, 7), (3, 4, 5)])
def test_masked_out_voxels_have_no_influence(spatial: tuple[int, ...]) -> None:
    logits, target = _batch(spatial)
    mask = torch.rand(2, *spatial, generator=torch.Generator().manual_seed(1)) > 0.5
    other_target = torch.where(mask, target, (target + 1) % 3)
    other_logits = torch.where(mask.unsqueeze(1), logits, torch.randn_like(logits) * 10)
    for fn in (dice_loss, ce_loss, sup_loss):
        ref = fn(logits, target, mask)
        torch.testing.assert_close(fn(other_logits, other_target, mask), ref)
        torch.testing.assert_close(fn(logits, target, mask.float()), ref)
    # gradient outside the mask is zero
    z = logits.clone().requires_grad_(True)
    sup_loss(z, target, mask).backward()
    assert torch.all(z.grad[~mask.unsqueeze(1).expand_as(z)] == 0)


def test_full_mask_equals_no_mask() -> None:
    logits, target = _batch((5, 5))
    ones = torch.ones_like(target, dtype=torch.bool)
    torch.testing.assert_close(ce_loss(logits, target, ones), F.cross_entropy(logits, target))
    torch.testing.assert_close(dice_loss(logits, target, ones), dice_loss(logits, target))


def test_empty_mask_is_zero_without_nan() -> None:
    logits, target = _batch((4, 4))
    z = logits.clone().requires_grad_(True)
    empty = torch.zeros_like(target, dtype=torch.bool)
    loss = sup_loss(z, target, empty)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(z.grad).all() and torch.all(z.grad == 0)


def test_shape_mismatch_raises() -> None:
    logits, target = _batch((4, 4))
    with pytest.raises(ValueError, match="mask"):
        ce_loss(logits, target, torch.ones(4, 4, dtype=torch.bool))
