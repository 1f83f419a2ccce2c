"""UnCoL method: two-step training in 2D and 3D with a tiny random teacher, and its mechanisms."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import uncol.methods  # noqa: F401
from uncol.config import Config, from_dict
from uncol.engine.checkpoint import load_checkpoint
from uncol.engine.loop import train
from uncol.errors import ConfigError
from uncol.methods import METHODS
from uncol.teachers import TEACHERS
from uncol.teachers.base import Teacher, TeacherEmbedding, TeacherOutput, combine_class_probs

DEMO = Path(__file__).resolve().parents[2] / "src" / "uncol" / "assets" / "demo"


class TinyTeacher(Teacher):
    """A random promptable 'foundation model' with the real interface: conv features on a 1/4 grid,
    per-class probabilities from the prompts' boxes/points, fused tokens from the embedding."""

    embed_dim = 16

    def __init__(self, spatial_dims: int) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.f1 = conv(1, 8, 3, padding=1)
        self.f2 = conv(8, 12, 3, padding=1)
        self.emb = conv(12, self.embed_dim, 1)
        self.visual_dims = [8, 12, 16]
        self.prompt_kind = "box" if spatial_dims == 2 else "points"
        self.freeze()

    @classmethod
    def build(cls, checkpoint, params, spatial_dims):
        torch.manual_seed(0)
        return cls(spatial_dims)

    def fingerprint(self) -> str:
        return f"tiny{self.spatial_dims}"

    def encode(self, images: torch.Tensor) -> TeacherEmbedding:
        pool = F.avg_pool2d if self.spatial_dims == 2 else F.avg_pool3d
        a = torch.relu(self.f1(images))
        b = torch.relu(self.f2(a))
        e = self.emb(b)
        return TeacherEmbedding([pool(a, 2), pool(b, 4), pool(e, 4)], pool(e, 4), tuple(images.shape[2:]))

    def decode(self, emb, prompts, num_classes, out_size, outputs=("probs", "fused")):
        B = emb.batch_size
        fg = torch.zeros(B, num_classes - 1, *out_size)
        prompted = torch.zeros(B, num_classes - 1, dtype=torch.bool)
        for b, pr in enumerate(prompts):
            for c, box in pr.boxes.items():
                x0, y0, x1, y1 = (int(v) for v in box)
                fg[b, c - 1, y0:y1 + 1, x0:x1 + 1] = 0.9
                prompted[b, c - 1] = True
            for c, pts in pr.points.items():
                for q in pts.coords.long():
                    fg[(b, c - 1, *q.tolist())] = 0.9
                prompted[b, c - 1] = True
        probs = combine_class_probs(fg, prompted)
        tokens = emb.embedding.flatten(2).transpose(1, 2)
        full = torch.cat([prompted.new_zeros(B, 1), prompted], 1)
        return TeacherOutput(probs, tokens, tuple(emb.embedding.shape[2:]), full)


class TinyTeacher3D(TinyTeacher):
    spatial_dims = 3


TinyTeacher.spatial_dims = 2
for _name, _cls in (("tiny_test2d", TinyTeacher), ("tiny_test3d", TinyTeacher3D)):
    if _name not in TEACHERS:
        TEACHERS.register(_name)(_cls)


def _cfg(spatial_dims: int, tmp: Path, model_params: dict | None = None, **method_params) -> Config:
    if spatial_dims == 2:
        data = {"root": str(DEMO / "hc18"), "spatial_dims": 2, "size": [32, 32]}
        model = {"name": "uncol_student", "params": {"vit_dim": 32, "vit_mlp_dim": 32, "neck_dim": 0, "vit_heads": 2,
                                                     "vit_dim_head": 16, "teacher_dim": 16, "out_heads": 1,
                                                     "backbone_params": {"feature_chns": [4, 8, 8, 16, 16]}}}
    else:
        data = {"root": str(DEMO / "hippocampus"), "spatial_dims": 3, "size": [16, 32, 16]}
        model = {"name": "uncol_student", "params": {"vit_dim": 32, "vit_mlp_dim": 32, "vit_heads": 2,
                                                     "vit_dim_head": 16, "teacher_dim": 16, "out_heads": 1,
                                                     "backbone_params": {"n_filters": 2}}}
    model["params"].update(model_params or {})
    data["split"] = {"ratios": [0.6, 0.2, 0.2], "labeled": 3}
    data["augment"] = {"enabled": False}
    d = {"data": data, "model": model, "teacher": {"name": f"tiny_test{spatial_dims}d", "cache_dir": str(tmp / "cache")},
         "method": {"name": "uncol", "params": {"stage1_iterations": 2, "stage2_iterations": 2, **method_params}},
         "train": {"batch_size": 2, "labeled_bs": 2, "unlabeled_bs": 2, "val_every": 100, "save_every": 100,
                   "log_every": 1, "threads": 1},
         "eval": {"max_val_cases": 1}}
    return from_dict(Config, d)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_two_stage_training_runs_and_logs_every_loss(spatial_dims: int, tmp_path: Path) -> None:
    cfg = _cfg(spatial_dims, tmp_path)
    summary = train(cfg, tmp_path / "run", progress=False)
    import json

    recs = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    s1 = [r for r in recs if r["kind"] == "train" and r["stage"] == "stage1"]
    s2 = [r for r in recs if r["kind"] == "train" and r["stage"] == "stage2"]
    assert len(s1) == 2 and len(s2) == 2
    assert {"sup" if False else "ce", "vis", "sem", "lambda"} <= set(s1[0])
    assert {"sup", "pseudo", "vis", "tau", "pl_coverage"} <= set(s2[0])
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in s1 + s2)
    ckpt = load_checkpoint(tmp_path / "run" / "final.pt")
    assert ckpt["spatial_dims"] == spatial_dims
    assert summary["method"] == "uncol"


def _method(spatial_dims: int, tmp: Path, model_params: dict | None = None, **kw):
    from uncol.engine.setup import build_method

    cfg = _cfg(spatial_dims, tmp, model_params, **kw)
    return build_method(cfg, num_classes=2 if spatial_dims == 2 else 3, spatial_dims=spatial_dims,
                        device=torch.device("cpu"))


def test_ema_is_reset_from_the_student_at_stage2_and_follows_it_there(tmp_path: Path) -> None:
    m = _method(2, tmp_path)
    with torch.no_grad():
        for p in m.student.parameters():
            p.add_(1.0)
    w_e = next(m.ema.module.parameters()).detach().clone()
    m.begin_stage("stage1")
    m.after_step(0, 10)  # S is re-initialised at stage 2: no EMA updates in stage 1
    assert torch.equal(next(m.ema.module.parameters()), w_e)
    m.begin_stage("stage2")
    assert torch.equal(next(m.ema.module.parameters()), next(m.student.parameters()))
    w_e = next(m.ema.module.parameters()).detach().clone()
    with torch.no_grad():
        for p in m.student.parameters():
            p.add_(1.0)
    w_s = next(m.student.parameters()).detach().clone()
    m.after_step(0, 10)
    # θ_S <- 0.99 θ_S + 0.01 θ
    assert torch.allclose(next(m.ema.module.parameters()), 0.99 * w_e + 0.01 * w_s, atol=1e-6)


def test_frozen_ema_option_stops_updates_in_stage2(tmp_path: Path) -> None:
    m = _method(2, tmp_path, freeze_ema_stage2=True)
    m.begin_stage("stage2")
    before = next(m.ema.module.parameters()).detach().clone()
    with torch.no_grad():
        for p in m.student.parameters():
            p.add_(1.0)
    m.after_step(0, 10)
    assert torch.equal(next(m.ema.module.parameters()), before)


def test_projectors_are_not_part_of_the_inference_model(tmp_path: Path) -> None:
    m = _method(2, tmp_path)
    names = set(m.inference_model().state_dict())
    assert not any(n.startswith(("vis_proj", "sem_proj", "ema")) for n in names)
    assert len(m.vis_proj) == 3


@pytest.mark.parametrize("mode", ["uapl", "s_only", "avg"])
def test_pseudo_label_switches_all_train(mode: str, tmp_path: Path) -> None:
    from uncol.data.sampler import Batch

    m = _method(2, tmp_path, pseudo_label=mode)
    m.begin_stage("stage2")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 32, 32, generator=g)
    y = (x[:, 0] > 0.5).long()
    batch = Batch(labeled={"image": x[:2], "label": y[:2]}, unlabeled={"image": x[2:]})
    out = m.train_step(batch, 1, 2)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert 0.0 <= out.parts["pl_coverage"] <= 1.0


def test_unknown_pseudo_label_mode_is_a_config_error(tmp_path: Path) -> None:
    from uncol.errors import ConfigError

    with pytest.raises(ConfigError, match="pseudo_label"):
        _method(2, tmp_path, pseudo_label="bogus")


def test_registered() -> None:
    assert "uncol" in METHODS


def test_cached_teacher_with_augmentation_encodes_each_training_image_once(tmp_path: Path,
                                                                          capfd: pytest.CaptureFixture[str]) -> None:
    cfg = _cfg(2, tmp_path)
    import dataclasses

    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, augment=dataclasses.replace(
        cfg.data.augment, enabled=True, rotate_deg=15.0)))
    train(cfg, tmp_path / "run", progress=False)
    files = list((tmp_path / "cache").rglob("*.pt"))
    split = __import__("json").loads((tmp_path / "run" / "split.json").read_text())
    # one entry per un-augmented training image (labelled + unlabelled), none for augmented/mixed ones
    assert len(files) == len(split["labeled"]) + len(split["unlabeled"])
    assert "teacher cache" not in capfd.readouterr().err  # progress=False silences the cache fill's bar too


def test_stage1_token_bank_decodes_only_when_filling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``stage1_g_tokens: bank``: G's decoder runs g_token_bank_size times per labelled image when stage 1 starts
    and not in stage-1 steps; stage 2 decodes as before. Online teachers are refused (no base images)."""
    import dataclasses

    calls: list[str] = []
    decode = TinyTeacher.decode
    def counted(self, emb, *a, **k):
        calls.append(emb.batch_size)
        return decode(self, emb, *a, **k)

    monkeypatch.setattr(TinyTeacher, "decode", counted)
    cfg = _cfg(2, tmp_path, stage1_g_tokens="bank", g_token_bank_size=2)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, augment=dataclasses.replace(
        cfg.data.augment, enabled=True, flip=True)), method=dataclasses.replace(cfg.method, params={
            **cfg.method.params, "stage2_iterations": 0, "stage1_iterations": 3}))
    train(cfg, tmp_path / "run", progress=False, stages=["stage1"])
    assert calls == [2, 2, 2]  # three labelled images, two jittered decodes each, nothing per step
    online = dataclasses.replace(cfg, teacher=dataclasses.replace(cfg.teacher, mode="online"))
    with pytest.raises(ConfigError, match="stage1_g_tokens"):
        _method_from(online)


def _method_from(cfg: Config):
    from uncol.engine.setup import build_method

    return build_method(cfg, num_classes=2, spatial_dims=2, device=torch.device("cpu"))


class _Images:
    """A stand-in dataset: ``get_seeded(i, 0)["image"]`` of fixed random images."""

    def __init__(self, n: int, size: int) -> None:
        self.x = torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(3)) * 2 + 1

    def __len__(self) -> int:
        return len(self.x)

    def get_seeded(self, i: int, seed: int) -> dict:
        return {"image": self.x[i]}


def _first_bn(model: nn.Module) -> nn.BatchNorm2d:
    return next(b for b in model.modules() if isinstance(b, torch.nn.BatchNorm2d))


def _with_images(m, ds) -> None:
    from types import SimpleNamespace

    m._run = [SimpleNamespace(labeled_ds=ds, unlabeled_ds=None, progress=False)]
    m._filled = True  # no teacher cache to fill here


def test_stage2_starts_from_prompt_free_batchnorm_statistics(tmp_path: Path) -> None:
    import copy

    ds = _Images(4, 32)
    m = _method(2, tmp_path)
    _with_images(m, ds)
    _first_bn(m.student).running_mean.fill_(7.0)  # statistics "gathered with the teacher's tokens": far off
    # expected: the per-channel mean of the first BN's input over a prompt-free pass on the 4 images
    ref = copy.deepcopy(m.student).train()
    seen = []
    _first_bn(ref).register_forward_hook(lambda mod, inp, out: seen.append(inp[0].mean(dim=(0, 2, 3))))
    with torch.no_grad():
        ref(ds.x)
    m.begin_stage("stage2")
    for model in (m.student, m.ema.module):  # the student recalibrated, then S copied from it
        torch.testing.assert_close(_first_bn(model).running_mean, seen[0], atol=1e-5, rtol=1e-4)
    # ema_own_bn: the EMA update does not copy the student's statistics back
    m2 = _method(2, tmp_path, ema_own_bn=True)
    _with_images(m2, ds)
    m2.begin_stage("stage2")
    own = _first_bn(m2.ema.module).running_mean.clone()
    _first_bn(m2.student).running_mean.fill_(7.0)
    m2.after_step(0, 10)
    assert torch.equal(_first_bn(m2.ema.module).running_mean, own) and not torch.equal(own, torch.full_like(own, 7.0))
    # neither: S starts with the student's stage-1 statistics
    m3 = _method(2, tmp_path, recalibrate_bn=False)
    _with_images(m3, ds)
    _first_bn(m3.student).running_mean.fill_(7.0)
    m3.begin_stage("stage2")
    assert torch.equal(_first_bn(m3.ema.module).running_mean, torch.full_like(seen[0], 7.0))


def test_semantic_path_in_the_adapter_space_pulls_own_knowledge_toward_gs_projected_tokens(tmp_path: Path) -> None:
    """semantic_space=adapter (authors' code): L_sem = MSE(own_knowledge(F_stu^4), teacher_kv_proj(F_G)),
    with gradients into the student's ViT/neck and into teacher_kv_proj; no projector of its own."""
    from uncol.data.sampler import Batch

    m = _method(2, tmp_path, semantic_space="adapter", visual_distill=False)
    assert m.sem_proj is None
    m.begin_stage("stage1")
    x = torch.randn(2, 1, 32, 32)
    y = torch.zeros(2, 32, 32, dtype=torch.long)
    y[:, 8:20, 10:24] = 1
    captured = {}
    real = m.student.forward_features

    def spy(*a, **k):
        captured["out"] = out = real(*a, **k)
        return out

    m.student.forward_features = spy
    torch.manual_seed(0)
    res = m.train_step(Batch(labeled={"image": x, "label": y}), 0, 10)
    out = captured["out"]
    want = F.mse_loss(m.student.own_knowledge(out.vit_tokens[-1], out.grid), out.knowledge)
    assert res.parts["sem"] == pytest.approx(want.item(), rel=1e-5) and want.item() > 0
    m.zero_grad()
    want.backward()
    assert m.student.teacher_kv_proj.weight.grad.abs().sum() > 0
    assert m.student.vit.norm.weight.grad.abs().sum() > 0
    from uncol.errors import ConfigError

    with pytest.raises(ConfigError, match="semantic_space"):
        _method(2, tmp_path, semantic_space="elsewhere")


# -- the knowledge path (SPEC §10): gradients reach what the prompt-free student uses -----------------------
def _fixed_batch(stage: int):
    from uncol.data.sampler import Batch

    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 1, 32, 32, generator=g)
    y = torch.zeros(4, 32, 32, dtype=torch.long)
    y[:, 8:20, 10:24] = 1
    if stage == 1:
        return Batch(labeled={"image": x[:2], "label": y[:2]})
    return Batch(labeled={"image": x[:2], "label": y[:2]}, unlabeled={"image": x[2:]})


def _grads(module: nn.Module) -> list[bool]:
    """For each parameter tensor of ``module``: did it receive a non-zero gradient?"""
    return [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in module.parameters()]


def _knowledge_method(tmp: Path, **kw):
    torch.manual_seed(0)
    return _method(2, tmp, model_params={"neck_dim": 16}, **kw)


def test_stage1_semantic_path_trains_the_inference_key_value(tmp_path: Path) -> None:
    """Default (authors' code): L_sem reaches every ViT layer, the final norm and the neck, i.e. the whole
    route to the key/value the adapter reads at inference; without DPKD none of them gets a gradient."""
    m = _knowledge_method(tmp_path, visual_distill=False)
    m.begin_stage("stage1")
    m.train_step(_fixed_batch(1), 5, 10).loss.backward()
    s = m.student
    assert all(_grads(s.vit.layers)) and all(_grads(s.vit.norm)) and all(_grads(s.neck))
    off = _knowledge_method(tmp_path, visual_distill=False, semantic_distill=False)
    off.begin_stage("stage1")
    off.train_step(_fixed_batch(1), 5, 10).loss.backward()
    assert not any(_grads(off.student.vit)) and not any(_grads(off.student.neck))
    # the SPEC eq. 2 option (a training-only projector) leaves the neck untrained, as the review found
    eq2 = _knowledge_method(tmp_path, visual_distill=False, semantic_space="teacher")
    eq2.begin_stage("stage1")
    eq2.train_step(_fixed_batch(1), 5, 10).loss.backward()
    assert all(_grads(eq2.student.vit.layers)) and not any(_grads(eq2.student.neck))


@pytest.mark.parametrize("knowledge, vit_trained", [("own", True), ("ema", False), ("teacher_and_ema", False)])
def test_stage2_segmentation_loss_reaches_the_vit_with_own_knowledge(tmp_path: Path, knowledge: str,
                                                                      vit_trained: bool) -> None:
    """Only ``own`` lets the segmentation loss reach the ViT layers; S's tokens (``ema``,
    ``teacher_and_ema``) pass through the student's own norm and neck, so those train in every mode."""
    m = _knowledge_method(tmp_path, visual_distill=False, stage2_knowledge=knowledge)
    m.begin_stage("stage2")
    m.train_step(_fixed_batch(2), 1, 2).loss.backward()  # segmentation losses only (no L_vis)
    s = m.student
    got = [all(_grads(s.vit.layers)), all(_grads(s.vit.norm)), all(_grads(s.neck))]
    assert got == [vit_trained, True, True]


def _train_steps(m, stage: int, steps: int = 3) -> torch.Tensor:
    """A few SGD steps of ``m`` on fixed data, then the prompt-free output on a fixed input."""
    opt = torch.optim.SGD(m.trainable_parameters(), lr=0.05, momentum=0.9)
    m.begin_stage(f"stage{stage}")
    m.train()
    for it in range(steps):
        opt.zero_grad()
        m.train_step(_fixed_batch(stage), it, 10).loss.backward()
        opt.step()
    m.student.eval()
    with torch.no_grad():
        return m.student(torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(9)))


@pytest.mark.parametrize("stage, switch", [(1, "semantic_distill"), (2, "visual_distill")])
def test_dpkd_switches_change_the_prompt_free_student(tmp_path: Path, stage: int, switch: str) -> None:
    """L_sem (stage 1) and L_vis (stage 2) on/off: same data, same seeds, different prompt-free output.
    In stage 1 with DPKD off the neck, used only by the inference key/value, does not move at all."""
    others = {"visual_distill": False} if switch == "semantic_distill" else {}
    on = _knowledge_method(tmp_path, **others, **{switch: True})
    off = _knowledge_method(tmp_path, **others, **{switch: False})
    assert all(torch.equal(a, b) for a, b in zip(on.student.parameters(), off.student.parameters()))
    neck0 = [p.detach().clone() for p in off.student.neck.parameters()]
    y_on, y_off = _train_steps(on, stage), _train_steps(off, stage)
    assert (y_on - y_off).abs().max() > 1e-4
    if stage == 1:
        assert all(torch.equal(a, b) for a, b in zip(neck0, off.student.neck.parameters()))
        assert not all(torch.equal(a, b) for a, b in zip(neck0, on.student.neck.parameters()))


def test_stage2_weights_the_pseudo_labelled_part_as_bcp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """L = sup(GT part) + 0.5 sup(pseudo part), sup = 0.5 (CE + Dice): BCP's mix_loss with u_weight 0.5."""
    import uncol.methods.uncol as mod
    from uncol.losses.segmentation import ce_loss, dice_loss, mix_loss

    calls = []
    real = mod.sup_loss

    def spy(logits, target, mask=None, parts=None):
        calls.append((logits.detach(), target, mask))
        return real(logits, target, mask, parts)

    monkeypatch.setattr(mod, "sup_loss", spy)
    m = _knowledge_method(tmp_path, visual_distill=False)
    m.begin_stage("stage2")
    out = m.train_step(_fixed_batch(2), 1, 2)
    (z, y, gt), (_, _, pl) = calls
    assert pl.any() and gt.any()
    want = 0.5 * (ce_loss(z, y, gt) + dice_loss(z, y, gt)) + 0.25 * (ce_loss(z, y, pl) + dice_loss(z, y, pl))
    assert out.loss.item() == pytest.approx(want.item(), rel=1e-6)
    assert out.loss.item() == pytest.approx(mix_loss(z, y, gt, pl, u_weight=0.5).item(), rel=1e-6)


@pytest.mark.parametrize("pairs", ["halves", "all"])
def test_stage2_mixes_the_pairs_of_the_authors_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pairs: str) -> None:
    """halves (default; the authors' code and BCP's): x_in = mix(l_a, u_a), x_out = mix(u_b, l_b) with a/b the
    first/second half of each stream, so the student sees labeled_bs mixed images; all: every pair both ways."""
    import uncol.methods.uncol as mod
    from uncol.data.sampler import Batch

    masks, seen, targets = [], [], []
    real_mask, real_sup = mod.bcp_mask, mod.sup_loss
    monkeypatch.setattr(mod, "bcp_mask", lambda *a, **k: masks.append(real_mask(*a, **k)) or masks[-1])
    monkeypatch.setattr(mod, "sup_loss", lambda z, y, mask=None, parts=None: targets.append((y, mask))
                        or real_sup(z, y, mask, parts))
    m = _knowledge_method(tmp_path, stage2_pairs=pairs)
    m.begin_stage("stage2")
    real_ff = m.student.forward_features
    m.student.forward_features = lambda x, *a, **k: seen.append(x) or real_ff(x, *a, **k)
    g = torch.Generator().manual_seed(7)
    xl, xu = torch.randn(4, 1, 32, 32, generator=g), torch.randn(4, 1, 32, 32, generator=g)
    yl = torch.zeros(4, 32, 32, dtype=torch.long)
    yl[:, 6:22, 9:25] = 1
    out = m.train_step(Batch(labeled={"image": xl, "label": yl}, unlabeled={"image": xu}), 1, 2)
    assert torch.isfinite(out.loss) and "vis" in out.parts
    k = masks[0]  # True: the labelled image in x_in
    a, b = ([0, 1], [2, 3]) if pairs == "halves" else ([0, 1, 2, 3], [0, 1, 2, 3])
    (x_mix,) = seen
    assert torch.equal(x_mix, torch.cat([torch.where(k, xl[a], xu[a]), torch.where(k, xu[b], xl[b])]))
    (y_mix, gt), _ = targets
    n = len(a)
    assert torch.equal(gt, torch.cat([k.expand(n, -1, -1), ~k.expand(n, -1, -1)]))
    assert torch.equal(y_mix[gt], torch.cat([yl[a][k.expand(n, -1, -1)], yl[b][~k.expand(n, -1, -1)]]))


def test_authors_g_probabilities_option_trains(tmp_path: Path) -> None:
    m = _method(2, tmp_path, g_probs="authors", normalized_entropy=True)
    m.begin_stage("stage2")
    out = m.train_step(_fixed_batch(2), 1, 2)
    assert torch.isfinite(out.loss) and 0.0 <= out.parts["pl_coverage"] <= 1.0


@pytest.mark.parametrize("points", [1, 5])
def test_3d_prompts_take_the_configured_number_of_points(tmp_path: Path, points: int,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from uncol.data.sampler import Batch

    m = _method(3, tmp_path, prompt_points=points)
    seen = []
    real = m.teacher.decode
    monkeypatch.setattr(m.teacher, "decode", lambda emb, prompts, *a: seen.extend(prompts) or real(emb, prompts, *a))
    y = torch.zeros(2, 16, 32, 16, dtype=torch.long)
    y[:, 4:12, 8:24, 4:12] = 1
    y[:, 5:9, 10:14, 5:9] = 2
    m.begin_stage("stage1")
    m.train_step(Batch(labeled={"image": torch.randn(2, 1, 16, 32, 16), "label": y}), 0, 2)
    assert seen and all(len(p.points[c].coords) == points for p in seen for c in p.points)
