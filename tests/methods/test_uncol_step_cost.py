"""Issue 15: the step-cost savings change no number. A few UnCoL steps with the real LiteMedSAM teacher,
once as the code runs now and once with every saving undone (the decoder computes probabilities and
fused tokens for every call, logits go through MedSAM's two bilinear resizes, every output head runs, the
two-way transformer gets NCHW-contiguous maps, hard labels come from argmax);
losses and updated weights agree to float tolerance. (The feature cache in memory holds the very tensors
its files hold: tests/teachers/test_cache.py.)"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import uncol.methods
import uncol.methods.uncol as uncol_method
from uncol.models.student import UncolStudent
from uncol.pseudo import uapl
from uncol.teachers import sam2d
from uncol.teachers.base import OUTPUTS, TeacherEmbedding

from .test_uncol import _cfg, _fixed_batch


def _undo_savings(monkeypatch: pytest.MonkeyPatch) -> None:
    full_decode = sam2d.SamTeacher2D.decode

    def decode_everything(self, emb, prompts, num_classes, out_size, outputs=OUTPUTS):
        return full_decode(self, emb, prompts, num_classes, out_size, OUTPUTS)

    def two_resizes(self, logits, size, out_size):
        _, _, nh, nw = self._scale(size)
        x = F.interpolate(logits, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
        return F.interpolate(x[..., :nh, :nw], size=tuple(out_size), mode="bilinear", align_corners=False)

    monkeypatch.setattr(sam2d.SamTeacher2D, "decode", decode_everything)
    monkeypatch.setattr(sam2d.SamTeacher2D, "_logits_to_image", two_resizes)
    monkeypatch.setattr(UncolStudent, "mean_head", lambda self, dec: torch.stack([h(dec) for h in self.heads]).mean(0))

    monkeypatch.setattr(sam2d, "TRANSFORMER_INPUT_FORMAT", torch.contiguous_format)  # NCHW maps
    for mod in (uncol_method, uapl):  # argmax over the class axis instead of max(dim).indices
        monkeypatch.setattr(mod, "hard_label", lambda x, dim=1: x.argmax(dim))


def _synthetic_encode(images: torch.Tensor) -> TeacherEmbedding:
    """LiteMedSAM-shaped features drawn from each image's values (its encoder, ~1 s per image, changed in
    nothing): visual 128@128², 160@64², 320@64², embedding 256@64²."""
    g = torch.Generator().manual_seed(int(images.abs().sum() * 1000) % 2**31)
    b = images.shape[0]
    shapes = [(128, 128), (160, 64), (320, 64)]
    visual = [torch.randn(b, c, s, s, generator=g) for c, s in shapes]
    return TeacherEmbedding(visual, torch.randn(b, 256, 64, 64, generator=g), tuple(images.shape[2:]))


def _run(tmp: Path, litemedsam, monkeypatch: pytest.MonkeyPatch) -> tuple[list[float], list[torch.Tensor]]:
    from uncol.engine.setup import build_method
    from uncol.teachers.litemedsam import LiteMedSAMTeacher

    monkeypatch.setattr(LiteMedSAMTeacher, "build", classmethod(lambda cls, *a: litemedsam))
    monkeypatch.setattr(litemedsam, "encode", _synthetic_encode)
    cfg = _cfg(2, tmp, {"teacher_dim": 256, "out_heads": 4})
    cfg = type(cfg)(**{**cfg.__dict__, "teacher": type(cfg.teacher)(name="litemedsam", mode="online")})
    torch.manual_seed(0)
    m = build_method(cfg, num_classes=2, spatial_dims=2, device=torch.device("cpu"))
    opt = torch.optim.SGD(m.trainable_parameters(), lr=0.05, momentum=0.9)
    losses = []
    for stage in (1, 2):
        m.begin_stage(f"stage{stage}")
        m.train()
        for it in range(2):
            torch.manual_seed(100 * stage + it)  # dropout draws the same in both runs
            opt.zero_grad()
            out = m.train_step(_fixed_batch(stage), it, 4)
            out.loss.backward()
            opt.step()
            m.after_step(it, 4)
            losses.append(out.loss.item())
    return losses, [p.detach().clone() for p in m.student.parameters()]


@pytest.mark.slow
def test_savings_leave_losses_and_weights_unchanged(tmp_path: Path, litemedsam,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The real LiteMedSAM prompt encoder and mask decoder (synthetic encoder features)."""
    now_losses, now_weights = _run(tmp_path, litemedsam, monkeypatch)
    with monkeypatch.context() as mp:
        _undo_savings(mp)
        old_losses, old_weights = _run(tmp_path, litemedsam, mp)
    assert len(now_losses) == 4
    assert now_losses == pytest.approx(old_losses, rel=1e-4, abs=1e-5)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(now_weights, old_weights))
