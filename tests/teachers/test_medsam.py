"""MedSAM ViT-B with random weights in the official ``medsam_vit_b.pth`` layout (the real file cannot be
downloaded here): strict load from a file, the official key layout, feature shapes, prompts, errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from uncol.errors import CheckpointError
from uncol.teachers.base import ClassPrompts
from uncol.teachers.medsam import MedSAMParams, MedSAMTeacher, build_sam_vit_b_parts


def _random_sam_state(img_size: int) -> dict[str, torch.Tensor]:
    """A ``Sam`` ViT-B state dict (keys image_encoder.* / prompt_encoder.* / mask_decoder.*) with random weights."""
    torch.manual_seed(0)
    holder = nn.Module()
    holder.image_encoder, holder.prompt_encoder, holder.mask_decoder = build_sam_vit_b_parts(img_size)
    return holder.state_dict()


@pytest.fixture(scope="module")
def official_file(tmp_path_factory) -> str:
    """A random-weight checkpoint saved like the official one: ``torch.save(sam.state_dict())`` at 1024."""
    path = tmp_path_factory.mktemp("medsam") / "medsam_vit_b.pth"
    torch.save(_random_sam_state(1024), path)
    return str(path)


def test_key_layout_is_segment_anythings_vit_b(official_file) -> None:
    from segment_anything import build_sam_vit_b

    official = build_sam_vit_b().state_dict()
    ours = torch.load(official_file, weights_only=True)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in official.items()}
    assert "image_encoder.blocks.0.attn.qkv.weight" in ours


def test_strict_load_round_trip(official_file) -> None:
    t = MedSAMTeacher(official_file)
    saved = torch.load(official_file, weights_only=True)
    own = t.state_dict()
    assert own.keys() == saved.keys() and all(torch.equal(own[k], saved[k]) for k in saved)
    assert t.visual_dims == [768, 768, 768] and t.checkpoint_id.startswith("sha256:")
    assert not t.training


def test_wrong_or_missing_checkpoint_says_where_to_get_it(official_file, tmp_path) -> None:
    with pytest.raises(CheckpointError, match=r"not found.*github.com/bowang-lab/MedSAM.*medsam_vit_b\.pth"):
        MedSAMTeacher(str(tmp_path / "absent.pth"))
    bad = tmp_path / "bad.pth"
    torch.save({"image_encoder.blocks.0.attn.qkv.weight": torch.zeros(3), "extra.w": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match=r"missing keys.*unexpected keys: extra\.w.*shape mismatches.*bowang-lab"):
        MedSAMTeacher(str(bad))
    pickled = tmp_path / "pickled.pth"
    torch.save({"model": nn.Linear(1, 1)}, pickled)  # not loadable with weights_only=True
    with pytest.raises(CheckpointError, match="cannot be read safely"):
        MedSAMTeacher(str(pickled))
    with pytest.raises(CheckpointError, match="shape mismatches.*pos_embed"):  # 1024 weights, 256 model
        MedSAMTeacher(official_file, MedSAMParams(img_size=256))


def test_features_and_prompts_at_a_small_input() -> None:
    """Same code path at img_size 256 (16×16 tokens) so the test stays fast."""
    t = MedSAMTeacher("random", MedSAMParams(img_size=256), state=_random_sam_state(256))
    x = torch.randn(1, 1, 40, 60)
    with torch.no_grad():
        emb = t.encode(x)
        out = t.decode(emb, [ClassPrompts(boxes={1: (5.0, 5.0, 30.0, 20.0)})], 3, (40, 60))
    assert [tuple(v.shape) for v in emb.visual] == [(1, 768, 16, 16)] * 3
    assert emb.embedding.shape == (1, 256, 16, 16)
    assert out.probs.shape == (1, 3, 40, 60) and out.fused.shape == (1, 256, 256) and out.fused_grid == (16, 16)
    assert out.prompted.tolist() == [[False, True, False]] and torch.all(out.probs[:, 2] == 0)


@pytest.mark.slow
def test_official_size_forward(official_file) -> None:
    """The real contract: 1024² input, three (B, 768, 64, 64) block outputs, (B, 4096, 256) fused tokens (~15 s)."""
    t = MedSAMTeacher(official_file)
    with torch.no_grad():
        emb = t.encode(torch.randn(1, 1, 64, 48))
        out = t.decode(emb, [ClassPrompts(boxes={1: (4.0, 4.0, 30.0, 40.0)})], 2, (64, 48))
    assert [tuple(v.shape) for v in emb.visual] == [(1, 768, 64, 64)] * 3
    assert emb.embedding.shape == (1, 256, 64, 64)
    assert out.fused.shape == (1, 4096, 256) and out.probs.shape == (1, 2, 64, 48)


def test_a_null_checkpoint_loads_medsam_vit_b_from_the_weights_folder(official_file, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("UNCOL_WEIGHTS", str(tmp_path))
    with pytest.raises(CheckpointError, match=r"uncol weights fetch medsam_vit_b"):
        MedSAMTeacher.build(None, MedSAMParams(), 2)
    (tmp_path / "medsam_vit_b.pth").symlink_to(official_file)
    t = MedSAMTeacher.build(None, MedSAMParams(), 2)
    saved = torch.load(official_file, weights_only=True)
    assert torch.equal(t.state_dict()["mask_decoder.iou_token.weight"], saved["mask_decoder.iou_token.weight"])
