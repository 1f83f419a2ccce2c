"""Fine-tuning baselines on LiteMedSAM (paper Table 6): LoRA known answers, what trains, a 2-step run.

Real LiteMedSAM forwards are kept few: its image encoder costs ~1.2 s per image on a 2-core CPU.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import uncol.methods  # noqa: F401
from uncol.config import Config, TeacherConfig, from_dict
from uncol.engine.checkpoint import load_checkpoint
from uncol.engine.loop import train
from uncol.errors import ConfigError
from uncol.eval.prompted import evaluate_prompted, is_prompted
from uncol.methods import METHODS, MethodContext
from uncol.methods.finetune import (
    FinetuneDecoder,
    FinetuneFull,
    FinetuneLoRA,
    FinetuneParams,
    LoRALinear,
)

DEMO = Path(__file__).resolve().parents[2] / "src" / "uncol" / "assets" / "demo" / "hc18"


@pytest.fixture(scope="module")
def litemedsam() -> nn.Module:
    from uncol.teachers import build_teacher

    return build_teacher(TeacherConfig(name="litemedsam", mode="online"), 2)


def _trainable(m: nn.Module) -> set[str]:
    return {n for n, p in m.named_parameters() if p.requires_grad}


# -------------------------------------------------------------------------------------------- LoRA
def test_lora_starts_at_the_base_model_and_merges_exactly() -> None:
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    lora = LoRALinear(copy.deepcopy(base), rank=2, alpha=4.0)
    x = torch.randn(3, 6)
    assert torch.equal(lora(x), base(x))  # B = 0: identical output, bit for bit
    assert torch.equal(lora.merged_weight(), base.weight)
    with torch.no_grad():
        lora.lora_B.normal_()
    expect = x @ (base.weight + 2.0 * lora.lora_B @ lora.lora_A).t() + base.bias  # scaling = alpha / r = 2
    assert torch.allclose(lora(x), expect, atol=1e-5)
    assert torch.allclose(lora(x), nn.functional.linear(x, lora.merged_weight(), base.bias), atol=1e-5)
    assert _trainable(lora) == {"lora_A", "lora_B"}


def test_lora_first_step_moves_only_b() -> None:
    """With B = 0 the gradient reaches B only (dL/dA = B^T ... = 0): LoRA's known start."""
    lora = LoRALinear(nn.Linear(4, 3), rank=2)
    lora(torch.randn(5, 4)).pow(2).sum().backward()
    assert torch.count_nonzero(lora.lora_A.grad) == 0 and torch.count_nonzero(lora.lora_B.grad) > 0
    assert lora.base.weight.grad is None


def test_apply_lora_on_litemedsam_encoder(litemedsam: nn.Module) -> None:
    sam = copy.deepcopy(litemedsam)
    block = sam.image_encoder.layers[3].blocks[0]
    ref = copy.deepcopy(block)
    FinetuneLoRA.prepare_model(sam, FinetuneParams(lora_rank=4))
    # TinyViT stages 1-3 have 2 + 6 + 2 attention blocks, each with a qkv and a proj linear
    assert sum(isinstance(m, LoRALinear) for m in sam.image_encoder.modules()) == 20
    assert not any(isinstance(m, LoRALinear) for m in sam.mask_decoder.modules())
    assert _trainable(sam) and all(".lora_" in n for n in _trainable(sam))
    x = torch.randn(1, 64 * 64, 320)
    with torch.no_grad():
        assert torch.equal(block(x), ref(x))  # identical output to the pretrained block
    decoder_too = copy.deepcopy(litemedsam)
    FinetuneLoRA.prepare_model(decoder_too, FinetuneParams(lora_train_decoder=True))
    assert any(n.startswith("mask_decoder.") for n in _trainable(decoder_too))
    with pytest.raises(ConfigError, match="lora_targets"):
        FinetuneLoRA.prepare_model(copy.deepcopy(litemedsam), FinetuneParams(lora_targets=("nope",)))


def test_what_trains_in_each_baseline(litemedsam: nn.Module) -> None:
    dec, full = copy.deepcopy(litemedsam), copy.deepcopy(litemedsam)
    FinetuneDecoder.prepare_model(dec, FinetuneParams())
    FinetuneFull.prepare_model(full, FinetuneParams())
    assert _trainable(dec) == {n for n, _ in litemedsam.named_parameters() if n.startswith("mask_decoder.")}
    t = _trainable(full)
    assert any(n.startswith("image_encoder.") for n in t) and any(n.startswith("mask_decoder.") for n in t)
    assert not any(n.startswith("prompt_encoder.") or n.endswith("attention_biases") for n in t)
    assert {"finetune_decoder", "finetune_full", "finetune_lora"} <= set(METHODS.names())
    assert is_prompted("finetune_lora") and not is_prompted("supervised")


def test_3d_data_and_non_sam_teachers_are_refused(litemedsam: nn.Module) -> None:
    cfg = from_dict(Config, {"method": {"name": "finetune_decoder"}})
    ctx = MethodContext(cfg=cfg, model=nn.Linear(1, 1), teacher=litemedsam, num_classes=2, spatial_dims=3)
    with pytest.raises(ConfigError, match="data.mode: slices"):
        FinetuneDecoder(ctx, FinetuneParams())
    ctx = MethodContext(cfg=cfg, model=nn.Linear(1, 1), teacher=nn.Identity(), num_classes=2, spatial_dims=2)
    with pytest.raises(ConfigError, match="SAM-family"):
        FinetuneDecoder(ctx, FinetuneParams())


# ----------------------------------------------------------------------------------- through the loop
def _cfg(method: str, cache: Path, params: dict | None = None, **train: float) -> Config:
    return from_dict(Config, {
        "data": {"root": str(DEMO), "spatial_dims": 2, "size": [32, 32], "augment": {"enabled": False},
                 "split": {"ratios": [0.6, 0.2, 0.2], "seed": 0, "labeled": 1}},
        "teacher": {"name": "litemedsam", "cache_dir": str(cache)},
        "method": {"name": method, "params": params or {}},
        "train": {"iterations": 2, "batch_size": 1, "val_every": 2, "save_every": 2, "log_every": 1, "lr": 0.01,
                  "threads": 2, "device": "cpu", **train},
        "eval": {"max_val_cases": 1}})


@pytest.mark.slow
def test_decoder_two_steps_cached_and_prompted_eval(tmp_path: Path, litemedsam: nn.Module) -> None:
    cfg = _cfg("finetune_decoder", tmp_path / "cache")
    out = tmp_path / "run"
    train(cfg, out, progress=False)
    recs = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in recs if r["kind"] == "train"] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in recs if r["kind"] == "train")
    val = [r for r in recs if r["kind"] == "val"]
    assert len(val) == 1 and val[0]["dice"] > 0.5  # prompted validation, not the prompt-free student path
    state = load_checkpoint(out / "final.pt")["model"]
    base = litemedsam.state_dict()
    assert state.keys() == base.keys()  # the official LiteMedSAM key layout
    changed = {k for k in base if not torch.equal(base[k], state[k])}
    assert changed and all(k.startswith("mask_decoder.") for k in changed)
    # the labelled training image + 1 validation image encoded once, into the shared cache
    assert len(list((tmp_path / "cache").rglob("*.pt"))) == 2
    res = evaluate_prompted(out / "best.pt", DEMO, tmp_path / "eval", split="val", limit=1,
                            cache_dir=tmp_path / "cache", progress=False)
    assert res["num_cases"] == 1 and res["mean"]["dice"] == pytest.approx(val[0]["dice"])
    assert len(list((tmp_path / "cache").rglob("*.pt"))) == 2  # served from the cache
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["prompt"].startswith("ground-truth boxes")


@pytest.mark.slow
def test_lora_two_steps_move_only_adapters(tmp_path: Path, litemedsam: nn.Module) -> None:
    cfg = _cfg("finetune_lora", tmp_path / "cache", {"validate": False}, lr=0.1)
    out = tmp_path / "run"
    train(cfg, out, progress=False)
    state = load_checkpoint(out / "final.pt")["model"]
    base = litemedsam.state_dict()
    lora_b = [k for k in state if k.endswith("lora_B")]
    assert len(lora_b) == 20 and any(torch.count_nonzero(state[k]) for k in lora_b)
    for k, v in base.items():  # every pretrained weight is where it was (LoRA wraps qkv/proj as .base)
        key = k if k in state else k.replace(".qkv.", ".qkv.base.").replace(".proj.", ".proj.base.")
        assert torch.equal(state[key], v), k
    assert not list((tmp_path / "cache").rglob("*.pt"))  # a training encoder is never cached


def test_batch_without_foreground_gives_a_zero_loss_that_backpropagates(tmp_path: Path) -> None:
    """Background-only slices have no box: the step must still be a valid (zero) training step."""
    from uncol.data.sampler import Batch
    from uncol.engine.setup import build_method

    cfg = _cfg("finetune_decoder", tmp_path / "cache")
    m = build_method(cfg, num_classes=2, spatial_dims=2, device=torch.device("cpu"))
    x = torch.randn(2, 1, 32, 32)
    out = m.train_step(Batch(labeled={"image": x, "label": torch.zeros(2, 32, 32, dtype=torch.long)}), 0, 2)
    assert out.loss.item() == 0.0 and out.loss.requires_grad
    out.loss.backward()
    grads = [p.grad for p in m.student.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.count_nonzero(g) == 0 for g in grads)
