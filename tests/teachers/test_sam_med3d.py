"""SAM-Med3D (vit_b_ori) teacher: official key layout, strict loading, equivalence with the official
code (known answers), shapes, prompt handling. Random weights only: the real file cannot be fetched here."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from uncol.config import from_dict
from uncol.errors import CheckpointError, ConfigError
from uncol.teachers.base import TEACHERS, ClassPrompts, PointPrompt
from uncol.teachers.sam3d import Sam3D, Sam3DConfig
from uncol.teachers.sam_med3d import SamMed3DParams, SamMed3DTeacher

KEYS = Path(__file__).parent / "data" / "sam_med3d_vit_b_ori_keys.json"
# tiny architecture for fast tests: 32³ input, 2³ grid, windows of 3 (padded), global blocks 2 and 4
TINY = Sam3DConfig(img_size=32, embed_dim=48, depth=4, num_heads=4, window_size=3, global_attn_indexes=(1, 3),
                   prompt_dim=48, feature_blocks=(0, 1, 3))
TINY_PARAMS = SamMed3DParams(blocks=(1, 2, 4))


def _randomise(sd: dict) -> None:
    """Deterministic random weights in sorted-key order (norm scales around 1)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for k in sorted(sd):
            r = torch.randn(sd[k].shape, generator=g) * 0.1
            sd[k].copy_(r + 1.0 if k.endswith("weight") and sd[k].dim() == 1 else r)


def _save_official(model: torch.nn.Module, path: Path, extras: bool = False) -> dict:
    sd = model.state_dict()
    obj: dict = {"model_state_dict": sd, "epoch": 0}
    if extras:  # what the official train.py pickles next to the weights
        obj.update(args=argparse.Namespace(img_size=128, lr=8e-4), losses=[0.5], dices=[np.float64(0.7)],
                   best_dice=np.float64(0.7), used_datas=["x"])
    torch.save(obj, path)
    return sd


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    m = Sam3D(TINY)
    _randomise(m.state_dict())
    path = tmp_path_factory.mktemp("sam3d") / "tiny.pth"
    _save_official(m, path, extras=True)
    return path


@pytest.fixture(scope="module")
def tiny(tiny_ckpt: Path) -> SamMed3DTeacher:
    return SamMed3DTeacher(str(tiny_ckpt), TINY_PARAMS, arch=TINY)


def test_state_dict_has_the_official_key_layout() -> None:
    ref = json.loads(KEYS.read_text())
    own = {k: list(v.shape) for k, v in Sam3D().state_dict().items()}
    assert own == ref["keys"]
    assert len(own) == ref["num_tensors"] == 324
    assert sum(int(np.prod(s)) for s in own.values()) == ref["num_values"] == 100_509_616
    assert own["image_encoder.patch_embed.proj.weight"] == [768, 1, 16, 16, 16]
    assert own["image_encoder.blocks.0.attn.rel_pos_d"] == [27, 64]  # windowed block: 2*14-1
    assert own["image_encoder.blocks.2.attn.rel_pos_d"] == [15, 64]  # global block: 2*8-1
    assert own["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] == [3, 128]


def test_known_answers_of_the_official_code() -> None:
    """Numbers produced by uni-medical/SAM-Med3D's own modules (same tiny config, same weights/input);
    they pin the windowing with padding and the official decomposed relative-position term."""
    cfg = Sam3DConfig(img_size=64, embed_dim=48, depth=4, num_heads=4, window_size=3, global_attn_indexes=(1, 3),
                      prompt_dim=48, feature_blocks=(0, 1, 3))
    m = Sam3D(cfg).eval()
    _randomise(m.state_dict())
    x = torch.randn(1, 1, 64, 64, 64, generator=torch.Generator().manual_seed(1))
    pts, lab = torch.tensor([[[10.0, 40.0, 22.0], [50.0, 5.0, 33.0]]]), torch.tensor([[1, 0]])
    with torch.no_grad():
        emb, feats = m.encode(x)
        logits, iou, tokens = m.decode(emb, (pts, lab), torch.zeros(1, 1, 16, 16, 16))
    assert [tuple(f.shape) for f in feats] == [(1, 48, 4, 4, 4)] * 3 and tokens.shape == (1, 64, 48)
    torch.testing.assert_close(emb[0, :4, 1, 2, 3], torch.tensor([-2.077826, 0.808558, -0.967241, 0.678568]),
                               rtol=1e-4, atol=1e-4)
    assert emb.abs().sum().item() == pytest.approx(2403.023193, rel=1e-4)
    assert logits.shape == (1, 1, 16, 16, 16)
    assert logits[0, 0, 3, 7, 11].item() == pytest.approx(-0.019531, abs=2e-5)
    assert logits[0, 0, 12, 1, 5].item() == pytest.approx(-0.009906, abs=2e-5)
    assert logits.abs().sum().item() == pytest.approx(228.220779, rel=1e-4)
    assert iou.item() == pytest.approx(0.810290, abs=1e-4)


def test_round_trip_of_the_official_wrapper(tiny_ckpt: Path, tiny: SamMed3DTeacher) -> None:
    saved = torch.load(tiny_ckpt, weights_only=False)["model_state_dict"]
    own = tiny.state_dict()
    assert list(own) == list(saved)
    assert all(torch.equal(own[k], saved[k]) for k in saved)
    assert not any(p.requires_grad for p in tiny.parameters()) and not tiny.training


def test_plain_state_dict_and_ddp_prefix_are_accepted(tmp_path: Path, tiny_ckpt: Path) -> None:
    sd = torch.load(tiny_ckpt, weights_only=False)["model_state_dict"]
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "plain.pth")
    t = SamMed3DTeacher(str(tmp_path / "plain.pth"), TINY_PARAMS, arch=TINY)
    assert torch.equal(t.state_dict()["mask_decoder.iou_token.weight"], sd["mask_decoder.iou_token.weight"])


def test_mismatch_names_the_keys_and_the_source(tmp_path: Path, tiny_ckpt: Path) -> None:
    sd = dict(torch.load(tiny_ckpt, weights_only=False)["model_state_dict"])
    del sd["image_encoder.blocks.0.attn.rel_pos_d"]
    sd["image_encoder.extra.weight"] = torch.zeros(1)
    sd["mask_decoder.iou_token.weight"] = torch.zeros(1, 7)
    torch.save({"model_state_dict": sd, "epoch": 0}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as e:
        SamMed3DTeacher(str(tmp_path / "bad.pth"), TINY_PARAMS, arch=TINY)
    msg = str(e.value)
    assert "\n" not in msg and "uni-medical/SAM-Med3D" in msg and "sam_med3d_turbo.pth" in msg
    for k in ("image_encoder.blocks.0.attn.rel_pos_d", "image_encoder.extra.weight", "mask_decoder.iou_token.weight"):
        assert k in msg


def test_missing_and_unsafe_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found.*uni-medical/SAM-Med3D"):
        SamMed3DTeacher(str(tmp_path / "nope.pth"), TINY_PARAMS, arch=TINY)
    torch.save({"model_state_dict": {}, "weird": ConfigError("x")}, tmp_path / "pickled.pth")
    with pytest.raises(CheckpointError, match="weights_only=True.*ConfigError.*model_state_dict") as e:
        SamMed3DTeacher(str(tmp_path / "pickled.pth"), TINY_PARAMS, arch=TINY)
    assert "\n" not in str(e.value)
    torch.save({"epoch": 3}, tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match="no state dict"):
        SamMed3DTeacher(str(tmp_path / "empty.pth"), TINY_PARAMS, arch=TINY)


def test_registry_and_config_errors(tiny_ckpt: Path) -> None:
    assert TEACHERS.get("sam_med3d") is SamMed3DTeacher
    with pytest.raises(ConfigError, match="3D teacher"):
        SamMed3DTeacher.build(str(tiny_ckpt), SamMed3DParams(), spatial_dims=2)
    with pytest.raises(ConfigError, match="teacher.params.blocks"):
        SamMed3DTeacher(str(tiny_ckpt), SamMed3DParams(blocks=(0, 4)), arch=TINY)
    with pytest.raises(ConfigError, match="teacher.params.intensity': expected one of 'above_min'.*got 'minmax'"):
        from_dict(SamMed3DParams, {"blocks": [1, 2, 4], "intensity": "minmax"}, prefix="teacher.params")


def test_preprocess_zscores_the_foreground_and_ignores_affine_renormalisation(tiny: SamMed3DTeacher) -> None:
    g = torch.Generator().manual_seed(0)
    img = torch.zeros(1, 1, 20, 24, 28)
    img[..., 4:16, 5:20, 6:22] = torch.rand(1, 1, 12, 15, 16, generator=g) * 100 + 50
    x = tiny.preprocess(img)
    assert x.shape == (1, 1, 32, 32, 32)
    fg = x[x > x.min()]
    assert fg.mean().item() == pytest.approx(0.0, abs=1e-4) and fg.std().item() == pytest.approx(1.0, abs=1e-4)
    torch.testing.assert_close(tiny.preprocess(img * 0.02 - 3.0), x, atol=1e-4, rtol=1e-4)


def _prompts(*classes: dict[int, tuple[list, list]]) -> list[ClassPrompts]:
    return [ClassPrompts(points={c: PointPrompt(torch.tensor(p, dtype=torch.float32), torch.tensor(lab))
                                 for c, (p, lab) in d.items()}) for d in classes]


def test_encode_decode_shapes_and_probabilities(tiny: SamMed3DTeacher) -> None:
    images = torch.randn(2, 1, 20, 24, 28, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        emb = tiny.encode(images)
        assert [tuple(v.shape) for v in emb.visual] == [(2, 48, 2, 2, 2)] * 3 and tiny.visual_dims == [48] * 3
        assert tuple(emb.embedding.shape) == (2, 48, 2, 2, 2) and emb.image_size == (20, 24, 28)
        prompts = _prompts({1: ([[5, 6, 7], [10, 3, 20]], [1, 0]), 2: ([[15, 20, 2]], [1])}, {})
        out = tiny.decode(emb, prompts, num_classes=3, out_size=(10, 12, 14))
    assert out.probs.shape == (2, 3, 10, 12, 14) and out.fused.shape == (2, 8, 48) and out.fused_grid == (2, 2, 2)
    torch.testing.assert_close(out.probs.sum(1), torch.ones(2, 10, 12, 14))
    assert out.prompted.tolist() == [[False, True, True], [False, False, False]]
    assert torch.all(out.probs[1, 0] == 1.0) and torch.all(out.probs[1, 1:] == 0.0)  # no prompt -> background
    assert torch.isfinite(out.fused).all() and out.fused[1].abs().sum() > 0  # prompt-free decoder run


def test_point_labels_and_empty_classes(tiny: SamMed3DTeacher) -> None:
    images = torch.randn(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        emb = tiny.encode(images)
        pos = tiny.decode(emb, _prompts({1: ([[8, 9, 10]], [1])}), 3, (32, 32, 32))
        neg = tiny.decode(emb, _prompts({1: ([[8, 9, 10]], [0])}), 3, (32, 32, 32))
        more = tiny.decode(emb, _prompts({1: ([[8, 9, 10], [20, 20, 20]], [1, 0])}), 3, (32, 32, 32))
        # a class absent from the prompts, and one with an empty point set, are background
        empty = tiny.decode(emb, [ClassPrompts(points={1: PointPrompt(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))})],
                            3, (32, 32, 32))
    assert (pos.probs - neg.probs).abs().max() > 1e-4
    assert (pos.probs - more.probs).abs().max() > 1e-4
    assert torch.all(pos.probs[:, 2] == 0) and pos.prompted.tolist() == [[False, True, False]]
    assert torch.all(empty.probs[:, 0] == 1) and not empty.prompted.any()
    # two prompted classes: fused is the mean of the single-class runs
    both = tiny.decode(emb, _prompts({1: ([[8, 9, 10]], [1]), 2: ([[8, 9, 10]], [0])}), 3, (32, 32, 32))
    torch.testing.assert_close(both.fused, (pos.fused + neg.fused) / 2)


def test_points_map_to_the_model_frame_by_voxel_centres(tiny: SamMed3DTeacher) -> None:
    c = tiny._to_model_frame(torch.tensor([[0.0, 7.0, 15.0]]), (16, 8, 32))
    torch.testing.assert_close(c, torch.tensor([[0.5, 29.5, 15.0]]))


@pytest.mark.slow
def test_full_vit_b_ori_at_128(tmp_path: Path) -> None:
    """The real architecture end to end once: official-wrapper checkpoint -> 128³ encode -> decode."""
    torch.manual_seed(0)
    sd = _save_official(Sam3D(), tmp_path / "sam_med3d_turbo.pth", extras=True)
    t = TEACHERS.get("sam_med3d").build(str(tmp_path / "sam_med3d_turbo.pth"), SamMed3DParams(), spatial_dims=3)
    assert torch.equal(t.state_dict()["image_encoder.pos_embed"], sd["image_encoder.pos_embed"])
    del sd
    images = torch.randn(1, 1, 64, 80, 96, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        emb = t.encode(images)
        out = t.decode(emb, _prompts({1: ([[30, 40, 50], [5, 5, 5]], [1, 0])}), 2, (64, 80, 96))
    assert [tuple(v.shape) for v in emb.visual] == [(1, 768, 8, 8, 8)] * 3
    assert tuple(emb.embedding.shape) == (1, 384, 8, 8, 8)
    assert out.probs.shape == (1, 2, 64, 80, 96) and out.fused.shape == (1, 512, 384) and out.fused_grid == (8, 8, 8)
    torch.testing.assert_close(out.probs.sum(1), torch.ones(1, 64, 80, 96))
    assert t.checkpoint_id in t.fingerprint()
