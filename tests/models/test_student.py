"""UnCoL student: sizes of paper Table 7, token grid, adapter, knowledge routing, MC-dropout."""

from __future__ import annotations

import pytest
import torch

from uncol.config import ModelConfig
from uncol.errors import ConfigError
from uncol.eval.efficiency import count_macs, count_params
from uncol.models import StudentOutput, build_model
from uncol.models.adapter import KnowledgeAdapter
from uncol.models.simplevit import SimpleViT, patchify, posemb_sincos


def _student(dims: int, k: int = 3, **params: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(name="uncol_student", params=dict(params)), dims, k)


@pytest.mark.parametrize(
    "dims,k,shape,params_ref,macs_ref",
    [(2, 5, (1, 1, 256, 256), 3.53e6, 3.60e9), (3, 3, (1, 1, 128, 128, 128), 13.94e6, 144.45e9)],
)
def test_sizes_match_paper_table7_within_10_percent(dims, k, shape, params_ref, macs_ref) -> None:
    m = _student(dims, k)
    n = count_params(m)  # teacher_kv_proj excluded
    macs = count_macs(m, shape)["macs_paper"]
    assert abs(n / params_ref - 1) < 0.01, n  # measured: 3,526,804 / 13,946,076
    assert abs(macs / macs_ref - 1) < 0.10, macs  # measured: 3.537 G / 144.016 G
    assert count_params(m, exclude=()) - n == 256 * 256 + 256  # the projection Linear(256 -> 256)


@pytest.mark.parametrize("dims,shape", [(2, (2, 1, 32, 48)), (3, (2, 1, 32, 16, 16))])
def test_forward_features_shapes(dims: int, shape: tuple[int, ...]) -> None:
    m = _student(dims).eval()
    x = torch.randn(shape)
    out = m.forward_features(x)
    assert isinstance(out, StudentOutput)
    grid = tuple(s // 16 for s in shape[2:])
    assert out.grid == grid
    n = 1
    for g in grid:
        n *= g
    d = 128 if dims == 2 else 256
    assert len(out.vit_tokens) == 4 and all(t.shape == (2, n, d) for t in out.vit_tokens)
    assert out.knowledge.shape == (2, n, 256)
    each = m.forward_features(x, each_head=True)
    assert out.logits.shape == (2, 3, *shape[2:]) and out.head_logits == [] and len(each.head_logits) == 4
    assert torch.allclose(out.logits, torch.stack(each.head_logits).mean(0))
    assert torch.allclose(m(x), out.logits)


@pytest.mark.parametrize("dims,shape", [(2, (2, 1, 32, 32)), (3, (2, 1, 32, 16, 16))])
def test_teacher_knowledge_changes_output_and_inference_ignores_it(dims: int, shape: tuple[int, ...]) -> None:
    # train mode with dropout off: deterministic, and BatchNorm's batch statistics keep the
    # untrained decoder from attenuating the bottleneck change to ~1e-6 (as eval-mode init stats do)
    m = _student(dims, dropout=False).train()
    x = torch.randn(shape)
    own = m.forward_features(x).logits
    t1 = m.forward_features(x, teacher_knowledge=torch.randn(2, 7, 256)).logits  # any M, d_t = 256
    t2 = m.forward_features(x, teacher_knowledge=torch.randn(2, 7, 256)).logits
    assert (t1 - own).abs().max() > 1e-3 and (t1 - t2).abs().max() > 1e-3
    assert torch.equal(m(x), own)  # forward() is prompt-free: its own last ViT layer
    m.eval()
    assert torch.equal(m(x), m.forward_features(x).logits)


def test_teacher_dim_is_configurable_and_projection_gets_gradients() -> None:
    m = _student(2, teacher_dim=64, dropout=False).train()
    out = m.forward_features(torch.randn(2, 1, 32, 32), teacher_knowledge=torch.randn(2, 5, 64))
    out.logits.mean().backward()
    assert m.teacher_kv_proj.weight.grad is not None and m.teacher_kv_proj.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="teacher_dim"):
        m.forward_features(torch.randn(2, 1, 32, 32), teacher_knowledge=torch.randn(2, 5, 256))


def test_vit_knowledge_of_the_specialized_teacher() -> None:
    m, ema = _student(3, dropout=False).train(), _student(3, dropout=False).train()
    with torch.no_grad():
        for p in ema.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 1, 32, 16, 16)
    tokens = ema.forward_features(x).vit_tokens[-1]
    out = m.forward_features(x, vit_knowledge=tokens)
    # the teacher's last layer goes through the student's own final norm, like its own tokens
    assert torch.allclose(out.knowledge, m.own_knowledge(tokens, out.grid))
    assert (out.logits - m(x)).abs().max() > 1e-3
    # the student's own last layer as vit_knowledge = plain inference
    own_tokens = m.forward_features(x).vit_tokens[-1]
    assert torch.allclose(m.forward_features(x, vit_knowledge=own_tokens).logits, m(x), atol=1e-6)
    # both given (a BCP-mixed image): the two projected sequences are concatenated as key/value
    know = torch.randn(2, 3, 256)
    both = m.forward_features(x, teacher_knowledge=know, vit_knowledge=tokens)
    assert both.knowledge.shape[1] == 3 + tokens.shape[1]
    assert torch.allclose(both.knowledge[:, :3], m.teacher_kv_proj(know))
    assert torch.allclose(both.knowledge[:, 3:], m.own_knowledge(tokens, out.grid))
    assert m.token_grid((32, 16, 16)) == (2, 1, 1) == out.grid


def test_adapter_shapes_and_residual() -> None:
    torch.manual_seed(0)
    a = KnowledgeAdapter(dim=32, kv_dim=12, heads=2)
    feat, kv = torch.randn(2, 32, 3, 4, 5), torch.randn(2, 9, 12)
    assert a(feat, kv).shape == feat.shape
    torch.nn.init.zeros_(a.out_proj.weight)
    torch.nn.init.zeros_(a.out_proj.bias)
    assert torch.equal(a(feat, kv), feat)  # residual add
    with pytest.raises(ValueError, match="adapter expects"):
        a(feat, torch.randn(2, 9, 32))
    assert sum(p.numel() for p in KnowledgeAdapter(256, 256).parameters()) == 4 * (256 * 256 + 256)


def test_patchify_order_and_posemb() -> None:
    x = torch.arange(2 * 32 * 48, dtype=torch.float32).view(1, 2, 32, 48)
    tok, grid = patchify(x, 16)
    assert grid == (2, 3) and tok.shape == (1, 6, 16 * 16 * 2)
    # token 4 = grid cell (1, 1); elements ordered (p1, p2, c)
    ref = x[0, :, 16:32, 16:32].permute(1, 2, 0).reshape(-1)
    assert torch.equal(tok[0, 4], ref)
    pe2 = posemb_sincos((2, 3), 8)
    assert pe2.shape == (6, 8) and torch.allclose(pe2[0], torch.tensor([0.0, 0.0, 1.0, 1.0] * 2))
    pe3 = posemb_sincos((2, 2, 2), 256)
    assert pe3.shape == (8, 256) and torch.all(pe3[:, 6 * 42 :] == 0)  # 256 = 6*42 + 4 zero pad
    vit = SimpleViT(3, 1, 16, dim=48, depth=2, heads=2, dim_head=8, mlp_dim=32)
    tokens, g = vit(torch.randn(1, 1, 16, 32, 16))
    assert g == (1, 2, 1) and len(tokens) == 2 and tokens[0].shape == (1, 2, 48)


def test_mc_dropout_option() -> None:
    x = torch.randn(1, 1, 32, 32)
    on = _student(2).train()
    assert not torch.equal(on(x), on(x))
    off = _student(2, dropout=False)
    assert all(mod.p == 0.0 for mod in off.modules() if isinstance(mod, torch.nn.Dropout))
    off3 = _student(3, dropout=False)
    assert not any(isinstance(mod, torch.nn.Dropout3d) for mod in off3.modules())


def test_params_validation_names_the_key() -> None:
    with pytest.raises(ConfigError, match="model.params.vit_width"):
        _student(2, vit_width=192)
    with pytest.raises(ConfigError, match="model.params.backbone_params.n_filter"):
        _student(3, backbone_params={"n_filter": 8})
    with pytest.raises(ConfigError, match="model.params.backbone"):
        _student(2, backbone="resnet")


def test_overrides_change_the_architecture() -> None:
    m = _student(2, vit_dim=192, vit_mlp_dim=576, neck_dim=0, out_heads=1, backbone="vnet")
    assert m.vit.dim == 192 and m.neck is None and len(m.heads) == 1
    assert m.adapter.kv_dim == m.kv_dim == m.vit_dim == 192
    assert m.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 3, 32, 32)


def test_mean_head_in_training_equals_heads_one_by_one() -> None:
    """Training mode merges the 2D heads into one convolution: same logits and same gradients."""
    torch.manual_seed(0)
    m = _student(2).train()
    for h in m.heads:  # distinct heads, so that a wrong mean would show
        for p in h.parameters():
            torch.nn.init.normal_(p)
    m.backbone.requires_grad_(False)
    dec = torch.randn(2, 16, 32, 48)
    merged = m.mean_head(dec)
    one_by_one = torch.stack([h(dec) for h in m.heads]).mean(0)
    calls = []
    for h in m.heads:
        h.register_forward_hook(lambda *a: calls.append(1))
    m.mean_head(dec)
    assert calls == []  # training: one merged convolution, no head module runs
    m.eval().mean_head(dec)
    assert len(calls) == 4  # eval: every head runs (the authors' network, as MACs and latency count it)
    assert torch.allclose(merged, one_by_one, atol=1e-5)
    g1 = torch.autograd.grad(merged.square().sum(), [h.weight for h in m.heads])
    g2 = torch.autograd.grad(one_by_one.square().sum(), [h.weight for h in m.heads])
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-4) for a, b in zip(g1, g2))
