"""The shared teacher helpers: multi-class probabilities from binary ones, embedding utilities, freezing."""
from __future__ import annotations

import torch

from uncol.teachers.base import TeacherEmbedding, combine_class_probs


def test_combine_class_probs_known_values() -> None:
    fg = torch.tensor([[[0.5], [0.8]]])  # (B=1, K-1=2, S=1)
    probs = combine_class_probs(fg, torch.tensor([[True, True]]))
    bg = 0.5 * 0.2
    expected = torch.tensor([bg, 0.5, 0.8]) / (bg + 1.3)
    assert torch.allclose(probs[0, :, 0], expected)


def test_unprompted_class_gets_nothing_and_background_gets_all() -> None:
    fg = torch.full((2, 2, 3, 3), 0.9)
    probs = combine_class_probs(fg, torch.tensor([[True, False], [False, False]]))
    assert torch.allclose(probs.sum(1), torch.ones(2, 3, 3))
    assert torch.all(probs[0, 2] == 0) and torch.all(probs[1, 1:] == 0)
    assert torch.all(probs[1, 0] == 1)


def test_certain_foreground_does_not_divide_by_zero() -> None:
    probs = combine_class_probs(torch.ones(1, 1, 2, 2), torch.tensor([[True]]))
    assert torch.all(probs[:, 1] == 1) and torch.all(probs[:, 0] == 0)


def test_embedding_cat_select_map() -> None:
    e = TeacherEmbedding([torch.arange(4.0).view(2, 1, 2)], torch.ones(2, 3, 2), (8,))
    both = TeacherEmbedding.cat([e.select(slice(0, 1)), e.select(slice(1, 2))])
    assert torch.equal(both.visual[0], e.visual[0]) and both.image_size == (8,)
    assert both.to(torch.float16).embedding.dtype == torch.float16


def test_teacher_stays_frozen(fake_teacher) -> None:
    fake_teacher.train()
    assert not fake_teacher.training
    assert all(not p.requires_grad for p in fake_teacher.parameters())
