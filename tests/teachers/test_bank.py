"""G's token bank (issue 15 approximation): jittered decodes per labelled image, drawn and moved like features."""
from __future__ import annotations

import pytest
import torch

from uncol.teachers.bank import FusedTokenBank
from uncol.teachers.cache import warp


def _samples() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for k in range(2):
        lab = torch.zeros(16, 16, dtype=torch.long)
        lab[2 + k:9 + k, 3:12] = 1
        out.append((torch.randn(1, 16, 16, generator=g), lab))
    return out


def test_fill_decodes_each_image_size_times_and_draw_moves_the_maps(fake_teacher) -> None:
    bank = FusedTokenBank(3)
    calls = []
    decode = fake_teacher.decode
    fake_teacher.decode = lambda e, *a, **k: (calls.append((e.batch_size, k.get("outputs", a[3] if len(a) > 3 else None))),
                                             decode(e, *a, **k))[1]
    samples = _samples()
    bank.fill(fake_teacher, samples, 2, torch.Generator().manual_seed(1), jitter_px=20.0)
    bank.fill(fake_teacher, samples[:1], 2, torch.Generator().manual_seed(1))  # already banked: no decode
    assert calls == [(3, ("fused",)), (3, ("fused",))] and len(bank) == 2
    maps = next(iter(bank.maps.values()))
    assert maps.shape == (3, 8, 4, 4) and maps.dtype == torch.float16
    direct = fake_teacher.encode(samples[0][0][None]).embedding  # the fake's fused tokens are its embedding
    assert torch.equal(maps[0], direct[0].half())
    images = torch.stack([s[0] for s in samples])
    eye = torch.tensor([[1.0, 0, 0], [0, 1, 0]]).expand(2, 2, 3)
    drawn = bank.draw({"base_image": images, "aug_theta": eye}, torch.Generator().manual_seed(2))
    assert drawn.shape == (2, 8, 4, 4) and drawn.dtype == torch.float32
    flip = torch.tensor([[-1.0, 0, 0], [0, 1, 0]]).expand(2, 2, 3)
    flipped = bank.draw({"base_image": images, "aug_theta": flip}, torch.Generator().manual_seed(2))
    assert torch.allclose(flipped, warp(drawn, flip), atol=1e-6) and torch.allclose(flipped, drawn.flip(-1), atol=1e-6)
    with pytest.raises(KeyError, match="not in the G token bank"):
        bank.draw({"base_image": images + 1, "aug_theta": eye}, torch.Generator())
