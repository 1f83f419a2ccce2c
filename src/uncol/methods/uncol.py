"""UnCoL: uncertainty-informed collaborative learning (SPEC.md §1–§4, §10), two stages on the shared loop.

``train_step`` reads in the order of the paper's figure: batch → teachers → pseudo-label fusion → losses.
Stage 1 (labelled only): grid copy-paste; G, prompted with ground-truth boxes/points, feeds the adapter and
is distilled on two paths: ``L_1 = L_sup + λ(t) (L_vis + L_sem)``. Stage 2: pseudo-labels for the un-mixed
unlabelled images from G (prompted by S's pseudo-label) and S (the EMA student), fused by UAPL; BCP
copy-paste; ``L_2 = L_sup(GT part) + β L_sup(pseudo part) + λ(t) L_vis`` (BCP's ``mix_loss``).
The knowledge path follows the authors' code by default (stage 1: L_sem in the adapter's key/value space,
CA_UNet.py ``loss_kd``; stage 2: the student's own ViT tokens with gradient, hippocampus_train_2d.py
``model(mixl_img, ..., unlab=True)``); the paper's literal readings are options. Element by element:
``docs/fidelity.md``. Ours: a cached G's features of mixed images are its sources' features, mixed.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from uncol.data.mixing import bcp_mask, grid_copy_paste_mask, half_slices, mix
from uncol.data.sampler import Batch
from uncol.errors import ConfigError
from uncol.losses.distill import Projector, resample_tokens, semantic_distill_loss, visual_distill_loss
from uncol.losses.segmentation import sup_loss
from uncol.methods.base import METHODS, Method, MethodContext, StagePlan, StepOutput
from uncol.methods.uncol_params import UncolParams
from uncol.models.batchnorm import recalibrate_batchnorm, update_batchnorm
from uncol.pseudo.uapl import authors_probs, fuse, largest_component
from uncol.pseudo.uncertainty import entropy, hard_label
from uncol.schedules import sigmoid_rampup, uapl_threshold
from uncol.teachers.bank import FusedTokenBank
from uncol.teachers.ema import EMA
from uncol.teachers.prompts import prompts_from_masks


@METHODS.register("uncol")
class Uncol(Method):
    Params = UncolParams
    needs_teacher = True

    def __init__(self, ctx: MethodContext, params: UncolParams) -> None:
        super().__init__(ctx, params)
        self.ema = EMA(self.student, momentum=params.ema_momentum)
        d_s, g = self.student.vit_dim, (self.teacher if params.use_generalized_teacher else None)
        hid = params.projector_hidden or None
        # Training-only projectors (not part of the student's size): one per visual layer pair, one semantic.
        self.vis_proj = nn.ModuleList(
            [Projector(d_s, g.visual_dims[j], hidden=hid) for _, j in params.layer_map] if g is not None else [])
        self.sem_proj = (Projector(d_s, g.embed_dim, hidden=hid)
                         if g is not None and params.semantic_space == "teacher" else None)
        if g is None:
            self._teacher = []
        self._gen = torch.Generator().manual_seed(ctx.cfg.train.seed + 17)
        self._run, self._filled = [], False  # the run context (a list: not a submodule)
        if params.stage1_g_tokens == "bank" and (params.g_token_bank_size < 1 or ctx.cfg.teacher.mode != "cached"):
            raise ConfigError("config key 'method.params.stage1_g_tokens: bank' needs teacher.mode: cached and "
                              f"method.params.g_token_bank_size >= 1 (got {ctx.cfg.teacher.mode!r}, {params.g_token_bank_size})")
        self._bank = FusedTokenBank(params.g_token_bank_size) if params.stage1_g_tokens == "bank" else None

    # -- schedule and run hooks ------------------------------------------------------------------------
    def stages(self) -> list[StagePlan]:
        t, p = self.cfg.train, self.params
        return [StagePlan("stage1", p.stage1_iterations or t.iterations, t.batch_size, 0),
                StagePlan("stage2", p.stage2_iterations or t.iterations, t.labeled_bs, t.unlabeled_bs)]

    def attach_run(self, run: Any) -> None:
        """The run's training datasets: G's cache is filled from them, BatchNorm recalibrated on them."""
        self._run = [run]
        if self.teacher is not None:
            self.teacher.serve(self._datasets())

    def begin_stage(self, name: str, resumed: bool = False) -> None:
        super().begin_stage(name, resumed)
        if self.teacher is not None and self._run and not self._filled:
            self.teacher.fill_from(self._datasets(), self._device(), progress=self._run[0].progress)
            self._filled = True
        if name == "stage1" and self._bank is not None and self.teacher is not None and self._run and not len(self._bank):
            self._fill_bank()
        # S is (re)initialised from the stage-1 student when stage 2 starts (SPEC §4): no updates before
        self.ema.freeze(name == "stage1" or self.params.freeze_ema_stage2)
        self.ema.copy_buffers = not self.params.ema_own_bn
        if name == "stage2" and not resumed:
            if self.params.recalibrate_bn or self.params.ema_own_bn:
                self._recalibrate(self.student)  # statistics gathered in stage 1 saw G's tokens
            self.ema.reset(self.student)

    def after_step(self, it: int, total: int) -> None:  # a no-op while S is frozen
        self.ema.update(self.student)

    def inference_model(self) -> nn.Module:
        """The student, prompt-free; its BatchNorm statistics recalibrated for inference if asked."""
        if self.params.recalibrate_bn:
            self._recalibrate(self.student)
        return self.student

    def _recalibrate(self, model: nn.Module) -> None:
        items = [(d, i) for d in self._datasets() for i in range(len(d))][: self.params.recalibrate_images]
        recalibrate_batchnorm(model, (torch.stack([d.get_seeded(i, 0)["image"] for d, i in items[k:k + 4]])
                                      .to(self._device()) for k in range(0, len(items), 4)))

    def _fill_bank(self) -> None:
        """G's token bank from the un-augmented labelled training images (teachers/bank.py)."""
        ds = self._run[0].labeled_ds
        train, ds.train = ds.train, False  # the base image and its label, without augmentation
        try:
            items = [ds.get_seeded(i, 0) for i in range(len(ds))]
        finally:
            ds.train = train
        p, dev = self.params, self._device()
        self._bank.fill(self.teacher, ((s["image"].to(dev), s["label"].to(dev)) for s in items), self.num_classes,  # type: ignore[union-attr]
                        torch.Generator().manual_seed(self.cfg.train.seed + 29), jitter_px=self.cfg.teacher.box_jitter_px,
                        num_pos=p.prompt_points, num_neg=p.prompt_negative_points)

    def _datasets(self) -> list[Any]:
        return [d for r in self._run for d in (r.labeled_ds, r.unlabeled_ds) if d is not None]

    def _device(self) -> torch.device:
        return next(self.student.parameters()).device

    # -- the two stages --------------------------------------------------------------------------------
    def train_step(self, batch: Batch, it: int, total: int) -> StepOutput:
        return self._stage1(batch, it, total) if self.stage == "stage1" else self._stage2(batch, it, total)

    def _stage1(self, batch: Batch, it: int, total: int) -> StepOutput:
        p, nd, parts = self.params, self.spatial_dims, {}
        x, y = batch.labeled["image"], batch.labeled["label"]
        # 1. copy-paste inside the labelled batch (60 % of a grid of patches from the next image)
        m = grid_copy_paste_mask(tuple(x.shape[2:]), p.copy_paste_grid, p.copy_paste_ratio, self._gen).to(x.device)
        perm = torch.roll(torch.arange(x.shape[0], device=x.device), 1)
        xm, ym = mix(x[perm], x, m, spatial_dims=nd), mix(y[perm], y, m, spatial_dims=nd)
        if self.teacher is None:
            loss = sup_loss(self.student(xm), ym, parts=parts)
            return StepOutput(loss, {"loss": loss.item(), **parts})
        # 2. G prompted with ground-truth boxes/points of the mixed image (or its sources' banked tokens, mixed)
        def mix_fn(t: Tensor) -> Tensor:
            return mix(t[perm], t, _resize(m, t), nd)

        grid = self.student.token_grid(tuple(x.shape[2:]))
        banked = self._bank is not None and "base_image" in batch.labeled
        with torch.no_grad():  # G's features are read only where L_vis or the decoder uses them
            emb = self.teacher.encode_mixed(batch.labeled, xm, mix_fn) if p.visual_distill or not banked else None
            if banked:
                know = resample_tokens(mix_fn(self._bank.draw(batch.labeled, self._gen)), grid)  # type: ignore[union-attr]
            else:
                g = self._decode(emb, ym, self.cfg.teacher.box_jitter_px, outputs=("fused",))
                know = resample_tokens(g.fused, grid, src_grid=g.fused_grid)
        out = self.student.forward_features(xm, teacher_knowledge=know)
        loss = sup_loss(out.logits, ym, parts=parts)
        lam, dpkd = p.lambda_max * sigmoid_rampup(it, total), torch.zeros((), device=x.device)
        if p.visual_distill:
            dpkd = dpkd + _part(parts, "vis", self._visual(out.vit_tokens, emb.visual, grid))  # type: ignore[union-attr]
        if p.semantic_distill:
            dpkd = dpkd + _part(parts, "sem", self._semantic(out, know, grid))
        loss = loss + lam * dpkd
        return StepOutput(loss, {"loss": loss.item(), "lambda": lam, **parts})

    def _stage2(self, batch: Batch, it: int, total: int) -> StepOutput:
        p, nd = self.params, self.spatial_dims
        xl, yl, xu = batch.labeled["image"], batch.labeled["label"], batch.unlabeled["image"]
        if xl.shape[0] != xu.shape[0]:
            raise ConfigError("BCP pairs labelled and unlabelled images: set train.labeled_bs equal to train.unlabeled_bs")
        tau = uapl_threshold(it, total, self.num_classes, normalized=p.normalized_entropy)
        # 1. teachers on the un-mixed unlabelled images: S (EMA student) then G prompted by S's pseudo-label
        with torch.no_grad():
            if p.ema_own_bn:
                update_batchnorm(self.ema.module, torch.cat([xl, xu]))
            s_out = self.ema.module.forward_features(xu)
            p_s = torch.softmax(s_out.logits.float(), dim=1)
            s_label = largest_component(hard_label(p_s), self.num_classes) if p.largest_component else hard_label(p_s)
            p_g, emb_l, emb_u, g_l = p_s, None, None, None
            if self.teacher is not None:
                emb_u = self.teacher.encode_part(batch.unlabeled)
                emb_l = (self.teacher.encode_part(batch.labeled)  # used by L_vis and teacher_and_ema only
                         if p.visual_distill or p.stage2_knowledge == "teacher_and_ema" else None)
                u_s = entropy(p_s, dim=1, normalized=p.normalized_entropy)
                g_u = self._decode(emb_u, s_label, p.stage2_box_jitter_px, u_s, tau, outputs=("probs",))
                p_g = (g_u.probs if p.g_probs == "product" or g_u.fg is None
                       else authors_probs(g_u.fg, g_u.prompted[:, 1:])).float()
                if p.stage2_knowledge == "teacher_and_ema":
                    g_l = self._decode(emb_l, yl, self.cfg.teacher.box_jitter_px, outputs=("fused",))
            pl = fuse(p_g, p_s, tau, mode=p.pseudo_label if self.teacher is not None else "s_only",  # 2. UAPL
                      normalize_entropy=p.normalized_entropy)
        # 3. bidirectional copy-paste with one mask K (True: from the labelled image in x_in); x_in pairs the
        # images ``a`` of both streams, x_out the images ``b`` (stage2_pairs: halves, or all pairs both ways)
        k = bcp_mask(tuple(xl.shape[2:]), p.bcp_ratio, self._gen).to(xl.device)
        a, b = stage2_pairs(xl.shape[0], p.stage2_pairs)

        def both_ways(lab: Tensor, unl: Tensor, kk: Tensor) -> Tensor:
            return torch.cat([mix(lab[a], unl[a], kk, spatial_dims=nd), mix(unl[b], lab[b], kk, spatial_dims=nd)])

        x_mix, y_mix = both_ways(xl, xu, k), both_ways(yl, pl.label, k)
        kb = k.expand_as(pl.mask)
        gt_region = torch.cat([kb[a], ~kb[b]])  # where the pixel came from the labelled image
        pl_region = torch.cat([~kb[a] & pl.mask[a], kb[b] & pl.mask[b]])  # confident pseudo-labelled pixels
        # 4. student (adapter key/value per stage2_knowledge), 5. losses
        out = self._stage2_student(x_mix, s_out, g_l, tuple(xl.shape[2:]), a, b)
        l_sup, l_pl = sup_loss(out.logits, y_mix, gt_region), sup_loss(out.logits, y_mix, pl_region)
        loss = l_sup + p.beta * l_pl  # = losses.segmentation.mix_loss(..., u_weight=beta), BCP's weighting
        parts = {"sup": l_sup.item(), "pseudo": l_pl.item(), "tau": float(tau), "pl_coverage": pl.mask.float().mean().item()}
        if emb_l is not None and p.visual_distill:
            vis = [both_ways(fl, fu, _resize(k, fl)) for fl, fu in zip(emb_l.visual, emb_u.visual)]
            l_vis = _part(parts, "vis", self._visual(out.vit_tokens, vis, out.grid))
            loss = loss + p.lambda_max * sigmoid_rampup(it, total) * l_vis
        return StepOutput(loss, {"loss": loss.item(), **parts})

    def _stage2_student(self, x_mix: Tensor, s_out: Any, g_l: Any, size: tuple[int, ...], a: slice, b: slice) -> Any:
        """The student on the mixed batch ``x_mix`` (x_in from the pairs ``a``, x_out from ``b``), its adapter fed
        per ``stage2_knowledge``."""
        if self.params.stage2_knowledge == "own":
            return self.student.forward_features(x_mix)
        if self.params.stage2_knowledge == "ema" or g_l is None:
            with torch.no_grad():
                s_mix = self.ema.module.forward_features(x_mix).vit_tokens[-1]
            return self.student.forward_features(x_mix, vit_knowledge=s_mix)
        know_l = resample_tokens(g_l.fused, self.student.token_grid(size), src_grid=g_l.fused_grid)
        s_tok = s_out.vit_tokens[-1]
        return self.student.forward_features(x_mix, teacher_knowledge=torch.cat([know_l[a], know_l[b]]),
                                             vit_knowledge=torch.cat([s_tok[a], s_tok[b]]))

    # -- pieces ----------------------------------------------------------------------------------------
    def _decode(self, emb: Any, masks: Tensor, jitter: float, ent: Tensor | None = None,
                tau: float | None = None, outputs: tuple[str, ...] = ("probs", "fused")) -> Any:
        """G's decoder prompted from ``masks`` (B,*S): boxes or points, points where ``ent`` < ``tau`` (SPEC §5);
        only ``outputs`` are computed (stage 1 uses the fused tokens, stage 2 the probabilities)."""
        p = self.params
        prompts = prompts_from_masks(masks, self.num_classes, kind=self.teacher.prompt_kind, jitter_px=jitter,
                                     generator=self._gen, entropy=ent, entropy_threshold=tau,
                                     num_pos=p.prompt_points, num_neg=p.prompt_negative_points)
        return self.teacher.decode(emb, prompts, self.num_classes, tuple(masks.shape[1:]), outputs)

    def _visual(self, tokens: list[Tensor], feats: list[Tensor], grid: tuple[int, ...]) -> Tensor:
        pairs = self.params.layer_map
        return visual_distill_loss([tokens[i - 1] for i, _ in pairs], [feats[j] for _, j in pairs],
                                   list(self.vis_proj), grid)

    def _semantic(self, out: Any, know: Tensor, grid: tuple[int, ...]) -> Tensor:
        if self.params.semantic_space == "adapter":  # own inference key/value vs G's projected tokens
            return F.mse_loss(self.student.own_knowledge(out.vit_tokens[-1], grid), out.knowledge)
        return semantic_distill_loss(out.vit_tokens[-1], know, grid, self.sem_proj, grid)



def stage2_pairs(batch: int, pairs: str) -> tuple[slice, slice]:
    """Batch slices ``(a, b)`` of the labelled/unlabelled images mixed into x_in (``a``) and x_out (``b``):
    ``halves`` (the authors' code and BCP's, :func:`uncol.data.mixing.half_slices`) — the student sees ``batch``
    mixed images; ``all`` (earlier default, ours) — every pair both ways, ``2 * batch`` mixed images."""
    return half_slices(batch) if pairs == "halves" else (slice(None), slice(None))


def _part(parts: dict[str, float], name: str, value: Tensor) -> Tensor:
    parts[name] = value.item()
    return value


def _resize(k: Tensor, like: Tensor) -> Tensor:
    """A (*S) 0/1 mask resampled (nearest) to the feature grid of ``like (B, C, *g)``."""
    return F.interpolate(k.float()[None, None], size=tuple(like.shape[2:]), mode="nearest")[0, 0].to(k.dtype)
