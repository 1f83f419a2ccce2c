"""Copy-paste masks (stage 1 grid, BCP block) and mixing of images, labels and masks, 2D and 3D."""
from __future__ import annotations

import pytest
import torch

from uncol.data.mixing import bcp_mask, grid_copy_paste_mask, mix


@pytest.mark.parametrize("spatial,cells,expected", [((32, 48), 16, 10), ((16, 16, 8), 64, 38)])
def test_grid_mask_fraction_and_alignment(spatial: tuple[int, ...], cells: int, expected: int) -> None:
    m = grid_copy_paste_mask(spatial, 4, 0.6, torch.Generator().manual_seed(0))
    assert m.shape == spatial and m.dtype == torch.bool
    patch = tuple(s // 4 for s in spatial)
    # every patch of the 4x4(x4) grid is uniformly on or off
    blocks = m.reshape(*[v for s, p in zip(spatial, patch) for v in (s // p, p)])
    inner = tuple(range(1, 2 * len(spatial), 2))
    on = blocks.all(dim=inner)
    off = (~blocks).all(dim=inner)
    assert torch.all(on | off)
    assert int(on.sum()) == expected == round(0.6 * cells)
    assert m.float().mean().item() == pytest.approx(expected / cells)


def test_grid_mask_seeded_reproducible_and_varied() -> None:
    a = grid_copy_paste_mask((16, 16), 4, 0.6, torch.Generator().manual_seed(7))
    b = grid_copy_paste_mask((16, 16), 4, 0.6, torch.Generator().manual_seed(7))
    c = grid_copy_paste_mask((16, 16), 4, 0.6, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_grid_mask_non_divisible_sizes_and_errors() -> None:
    m = grid_copy_paste_mask((10, 7), 4, 0.5, torch.Generator().manual_seed(0))
    assert m.shape == (10, 7)
    with pytest.raises(ValueError):
        grid_copy_paste_mask((3, 8), 4, 0.6)


@pytest.mark.parametrize("spatial", [(30, 24), (12, 9, 15), (256, 256)])
def test_bcp_mask_block_is_two_thirds(spatial: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(3)
    for _ in range(5):
        m = bcp_mask(spatial, generator=g)
        assert m.shape == spatial and m.dtype == torch.bool
        block = (~m).nonzero()
        extent = (block.max(0).values - block.min(0).values + 1).tolist()
        assert extent == [int(s * 2 / 3) for s in spatial]
        assert int((~m).sum()) == torch.tensor(extent).prod().item()  # one solid block, 1 outside
    assert torch.equal(bcp_mask((20, 20), generator=torch.Generator().manual_seed(1)),
                       bcp_mask((20, 20), generator=torch.Generator().manual_seed(1)))


def test_mix_images_labels_and_masks() -> None:
    mask = torch.tensor([[True, False, True], [False, True, False], [True, True, False], [False, False, True]])
    a_img, b_img = torch.ones(2, 3, 4, 3), torch.zeros(2, 3, 4, 3)
    out = mix(a_img, b_img, mask)
    assert out.shape == (2, 3, 4, 3)
    assert torch.equal(out[1, 2], mask.float())
    a_lab, b_lab = torch.full((2, 4, 3), 3, dtype=torch.int64), torch.full((2, 4, 3), 1, dtype=torch.int64)
    lab = mix(a_lab, b_lab, mask)
    assert lab.dtype == torch.int64 and torch.equal(lab[0], torch.where(mask, 3, 1))
    # bool tensors (e.g. pseudo-label masks) mix too; 0/1 long masks as BCP's are accepted
    ones, zeros = torch.ones(2, 4, 3, dtype=torch.bool), torch.zeros(2, 4, 3, dtype=torch.bool)
    pm = mix(ones, zeros, mask.long())
    assert pm.dtype == torch.bool and torch.equal(pm[1], mask)
    # equals the arithmetic form a*m + b*(1-m) for images
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 1, 4, 3, generator=g), torch.randn(2, 1, 4, 3, generator=g)
    torch.testing.assert_close(mix(x, y, mask), x * mask + y * (1 - mask.float()))
    # a batch-shaped mask (B, *S) against labels of the same shape: elementwise
    per = torch.stack([mask, ~mask])
    assert torch.equal(mix(a_lab, b_lab, per)[1], torch.where(~mask, 3, 1))
    # batch size 1 and one channel: both readings of a (1, H, W) mask agree
    assert torch.equal(mix(torch.ones(1, 1, 4, 3), torch.zeros(1, 1, 4, 3), mask[None])[0, 0], mask.float())


def test_mix_per_image_masks_3d_and_ambiguity() -> None:
    masks = torch.stack([torch.ones(2, 2, 2, dtype=torch.bool), torch.zeros(2, 2, 2, dtype=torch.bool)])
    a, b = torch.ones(2, 1, 2, 2, 2), torch.zeros(2, 1, 2, 2, 2)
    out = mix(a, b, masks)
    assert out[0].min() == 1 and out[1].max() == 0
    lab = mix(torch.ones(2, 2, 2, 2, dtype=torch.int64), torch.zeros(2, 2, 2, 2, dtype=torch.int64), masks)
    assert lab[0].min() == 1 and lab[1].max() == 0
    # (B, H, W) mask vs a 3D label batch with D == B is ambiguous unless spatial_dims is given
    with pytest.raises(ValueError, match="spatial_dims"):
        mix(torch.ones(2, 2, 3, 3), torch.zeros(2, 2, 3, 3), torch.ones(2, 3, 3, dtype=torch.bool))
    per_image_2d = torch.stack([torch.ones(3, 3, dtype=torch.bool), torch.zeros(3, 3, dtype=torch.bool)])
    img = mix(torch.ones(2, 2, 3, 3), torch.zeros(2, 2, 3, 3), per_image_2d, spatial_dims=2)
    assert img[0].min() == 1 and img[1].max() == 0


def test_label_mixing_follows_image_mixing() -> None:
    """Stage-1 use: patches of the donor pasted into the base, labels mixed identically."""
    g = torch.Generator().manual_seed(5)
    m = grid_copy_paste_mask((8, 8), 4, 0.6, g)
    base_img, donor_img = torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8)
    base_lab, donor_lab = torch.zeros(1, 8, 8, dtype=torch.int64), torch.full((1, 8, 8), 2)
    img = mix(donor_img, base_img, m)
    lab = mix(donor_lab, base_lab, m)
    assert torch.equal(img[0, 0].bool(), lab[0].bool()) and torch.equal(lab[0] == 2, m)
