"""Slice-wise teacher: a 2D teacher over the slices of a volume, everything stacked back to 3D."""
from __future__ import annotations

import pytest
import torch

from uncol.teachers.prompts import make_prompts
from uncol.teachers.slicewise import SliceWiseTeacher


def _volume() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(2, 1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    lab = torch.zeros(2, 3, 16, 16, dtype=torch.long)
    lab[0, 1, 4:8, 2:10] = 1
    lab[1, 2, 0:16, 8:16] = 2
    return x, lab


def test_stacks_features_probs_and_tokens(fake_teacher) -> None:
    x, lab = _volume()
    t = SliceWiseTeacher(fake_teacher, chunk=4)  # chunks straddle volumes: 6 slices in 2 calls
    emb = t.encode(x)
    assert [tuple(v.shape) for v in emb.visual] == [(2, 1, 3, 8, 8), (2, 1, 3, 4, 4)]
    assert emb.embedding.shape == (2, 8, 3, 4, 4) and emb.image_size == (3, 16, 16)
    per_slice = fake_teacher.encode(x[1, :, 2][None])  # volume 1, slice 2
    assert torch.equal(emb.visual[0][1, :, 2], per_slice.visual[0][0])
    out = t.decode(emb, make_prompts(lab, 3, t.prompt_kind), 3, (3, 16, 16))
    assert out.probs.shape == (2, 3, 3, 16, 16)
    assert torch.equal(out.probs.argmax(1), lab)  # tight boxes on rectangles: exact
    assert out.fused.shape == (2, 3 * 16, 8) and out.fused_grid == (3, 4, 4)
    assert out.prompted.tolist() == [[False, True, False], [False, False, True]]
    pooled = SliceWiseTeacher(fake_teacher, pool=2)
    e2 = pooled.encode(x)
    assert e2.visual[0].shape == (2, 1, 3, 4, 4)
    assert pooled.decode(e2, make_prompts(lab, 3, "slice_boxes"), 3, (6, 8, 8)).fused_grid == (3, 2, 2)


def test_needs_slice_prompts(fake_teacher) -> None:
    x, lab = _volume()
    t = SliceWiseTeacher(fake_teacher)
    with pytest.raises(ValueError, match="slice_boxes"):
        t.decode(t.encode(x), make_prompts(lab, 3, "points"), 3, (3, 16, 16))


def test_litemedsam_slicewise_end_to_end(litemedsam) -> None:
    """The real 2D teacher on a 2-slice volume (two LiteMedSAM encodes)."""
    x = torch.zeros(1, 1, 2, 64, 64)
    x[0, 0, :, 16:48, 20:44] = 1.0
    lab = (x[:, 0] > 0).long()
    lab[0, 0] = 0  # slice 0: no prompt -> background
    t = SliceWiseTeacher(litemedsam, chunk=2)
    with torch.no_grad():
        emb = t.encode(x)
        out = t.decode(emb, make_prompts(lab, 2, t.prompt_kind), 2, (2, 64, 64))
    assert [tuple(v.shape) for v in emb.visual] == [(1, 128, 2, 128, 128), (1, 160, 2, 64, 64), (1, 320, 2, 64, 64)]
    assert out.probs.shape == (1, 2, 2, 64, 64) and out.fused.shape == (1, 2 * 4096, 256)
    assert torch.all(out.probs[0, 0, 0] == 1)
    with torch.no_grad():
        only = t.decode(emb, make_prompts(lab, 2, t.prompt_kind), 2, (2, 64, 64), outputs=("probs",))
    assert torch.allclose(only.probs, out.probs, atol=1e-6)  # slice 0 skipped, slice 1 the same
    pred = out.probs[0, 1, 1] > 0.5
    truth = lab[0, 1].bool()
    assert 2 * (pred & truth).sum() / (pred.sum() + truth.sum()) > 0.8


def test_probs_only_decodes_only_prompted_slices(fake_teacher) -> None:
    """Issue 15: when only probabilities are used, slices without a prompt are not decoded (they are
    background whatever the decoder says); the probabilities equal the full decode's."""
    x, lab = _volume()
    t = SliceWiseTeacher(fake_teacher, chunk=4)
    emb = t.encode(x)
    prompts = make_prompts(lab, 3, t.prompt_kind)
    full = t.decode(emb, prompts, 3, (3, 16, 16))
    seen: list[int] = []
    decode = fake_teacher.decode
    fake_teacher.decode = lambda e, *a, **k: (seen.append(e.batch_size), decode(e, *a, **k))[1]
    only = t.decode(emb, prompts, 3, (3, 16, 16), outputs=("probs",))
    assert sum(seen) == 2  # the two prompted slices of the six
    assert only.fused is None and torch.equal(only.probs, full.probs) and only.prompted.equal(full.prompted)
    assert only.fg is None and full.fg is None  # the fake teacher has no per-class foreground
    seen.clear()
    empty = t.decode(emb, make_prompts(torch.zeros_like(lab), 3, t.prompt_kind), 3, (3, 16, 16), outputs=("probs",))
    assert seen == [] and torch.all(empty.probs[:, 0] == 1)
