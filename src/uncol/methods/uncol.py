"""UnCoL: uncertainty-informed collaborative learning (SPEC.md §1–§4), two stages on the shared loop.

``train_step`` reads in the order of the paper's figure: batch → teachers → pseudo-label fusion → losses.

Stage 1 (labelled only): grid copy-paste inside the labelled batch; the frozen generalized teacher G,
prompted with ground-truth boxes/points, feeds the knowledge adapter and is distilled on two paths:
``L_1 = L_sup + λ(t) (L_vis + L_sem)``.

Stage 2 (labelled + unlabelled): pseudo-labels for the un-mixed unlabelled images from G (prompted by the
specialized teacher S's current pseudo-label) and S (the EMA student), fused by UAPL; BCP bidirectional
copy-paste mixes images, ground truth and pseudo-labels with one mask;
``L_2 = L_sup(GT part) + β L_uapl(pseudo part) + λ(t) L_vis``.

Choices where the paper is silent (ours, configurable):
- knowledge for a BCP-mixed image: G's tokens of its labelled source and S's tokens of its unlabelled
  source, concatenated as the adapter's key/value sequence (each source keeps its own projection);
- teacher features for mixed inputs in ``teacher.mode: cached``: the cached features of the two
  source images mixed with the same mask resampled to each feature grid (``online`` re-encodes);
- G's prompts in stage 2 are tight boxes/points from S's pseudo-label (no jitter).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from uncol.data.mixing import bcp_mask, grid_copy_paste_mask, mix
from uncol.data.sampler import Batch
from uncol.losses.distill import Projector, resample_tokens, semantic_distill_loss, visual_distill_loss
from uncol.losses.segmentation import ce_loss, dice_loss
from uncol.methods.base import METHODS, Method, MethodContext, StagePlan, StepOutput
from uncol.pseudo.schedules import sigmoid_rampup, uapl_threshold
from uncol.pseudo.uapl import fuse
from uncol.pseudo.uncertainty import entropy
from uncol.teachers.ema import EMA


@dataclass(frozen=True)
class UncolParams:
    stage1_iterations: int = 0  # 0 -> train.iterations (paper: 15,000 per stage)
    stage2_iterations: int = 0  # 0 -> train.iterations
    ema_momentum: float = 0.99  # paper
    freeze_ema_stage2: bool = False  # paper: EMA updated in both stages; authors' code freezes it (True)
    lambda_max: float = 0.1  # ours (paper's value lost); authors' code: 0.1
    beta: float = 0.5  # BCP's fixed weight (paper)
    copy_paste_ratio: float = 0.6  # paper: 60 % of the grid
    copy_paste_grid: int = 4  # ours: 4x4 (2D) / 4x4x4 (3D)
    bcp_ratio: float = 2.0 / 3.0  # BCP
    visual_distill: bool = True  # ablation switch (DPKD visual path)
    semantic_distill: bool = True  # ablation switch (DPKD semantic path, stage 1 only)
    # Where the semantic path compares the two (SPEC §2.2 / §8): "teacher" = eq. 2 as the SPEC writes it,
    # phi_sem(F_stu^4) against G's fused tokens (a training-only projector on the student side);
    # "adapter" = the authors' code (CA_UNet.py: MSE(s_prior_features, proj_align(sam_post_embed))): the
    # student's own adapter knowledge (final norm [+ neck] of F_stu^4, what the adapter reads at inference)
    # against G's tokens projected to the adapter width (what it reads in stage 1), gradients to both sides.
    # Only "adapter" ties the inference key/value to the training one.
    semantic_space: str = "teacher"
    pseudo_label: str = "uapl"  # uapl | s_only (S-Tch-PL) | avg (Avg-Tch-PL)
    use_generalized_teacher: bool = True  # False = no G at all (the ablation baseline)
    layer_map: tuple[tuple[int, int], ...] = ((1, 0), (2, 1), (3, 2))  # (student layer 1-based, teacher feature idx)
    largest_component: bool = False  # authors' code keeps the largest component of S's pseudo-label
    projector_hidden: int = 0  # 0 -> max(d_s, d_t)
    # adapter key/value for a BCP-mixed image in stage 2 (ours; the paper: G for labelled, S for unlabelled
    # images): "both" = G's tokens of the labelled source + S's tokens of the unlabelled source, concatenated;
    # "specialized" = S's last-layer tokens of the mixed image itself (what inference resembles: own tokens)
    stage2_knowledge: str = "both"
    # outward jitter (px in MedSAM's 1024 frame) of the boxes G gets from S's pseudo-label in stage 2 (ours;
    # 0 = tight). LiteMedSAM under-segments with tight boxes, which can shrink the pseudo-labels step by step.
    stage2_box_jitter_px: float = 0.0
    # Before evaluation/checkpointing, recompute the student's BatchNorm running statistics with prompt-free
    # forward passes (its own tokens as knowledge) over the training images (ours). Training feeds the adapter
    # G's/S's tokens, so running statistics gathered in training do not match inference; measured on the HC18
    # demo: eval-mode val Dice 0.004 without, 0.474 after recalibration (train-mode batch statistics: 0.52).
    recalibrate_bn: bool = True
    recalibrate_images: int = 64
    # The specialized teacher S predicts prompt-free (its own tokens feed its adapter), so its BatchNorm
    # statistics are its own (ours): recalibrated prompt-free over the training images when stage 2 starts,
    # then updated each stage-2 step by a no-grad prompt-free pass over the step's un-mixed images, and not
    # copied from the student at EMA updates. False: S copies the student's statistics (gathered while G's
    # tokens fed the adapter) -- measured on HC18: S's pseudo-labels then cover the whole image.
    ema_own_bn: bool = True


@METHODS.register("uncol")
class Uncol(Method):
    Params = UncolParams
    needs_teacher = True

    def __init__(self, ctx: MethodContext, params: UncolParams) -> None:
        if params.stage2_knowledge not in ("both", "specialized"):
            from uncol.errors import ConfigError

            raise ConfigError(f"config key 'method.params.stage2_knowledge' must be both or specialized, "
                              f"got {params.stage2_knowledge!r}")
        if params.semantic_space not in ("teacher", "adapter"):
            from uncol.errors import ConfigError

            raise ConfigError(f"config key 'method.params.semantic_space' must be teacher or adapter, "
                              f"got {params.semantic_space!r}")
        if params.pseudo_label not in ("uapl", "s_only", "avg"):
            from uncol.errors import ConfigError

            raise ConfigError(f"config key 'method.params.pseudo_label' must be uapl, s_only or avg, got {params.pseudo_label!r}")
        super().__init__(ctx, params)
        self.ema = EMA(self.student, momentum=params.ema_momentum)
        d_s = self.student.vit_dim
        g = self.teacher if params.use_generalized_teacher else None
        hid = params.projector_hidden or None
        # Training-only projectors (not part of the student's size): one per visual layer pair, one semantic.
        self.vis_proj = nn.ModuleList(
            [Projector(d_s, g.visual_dims[j], hidden=hid) for _, j in params.layer_map] if g is not None else [])
        self.sem_proj = (Projector(d_s, g.embed_dim, hidden=hid)
                         if g is not None and params.semantic_space == "teacher" else None)
        if g is None:
            self._teacher = []
        self._gen = torch.Generator().manual_seed(ctx.cfg.train.seed + 17)

    # -- schedule -------------------------------------------------------------------------------------
    def stages(self) -> list[StagePlan]:
        t, p = self.cfg.train, self.params
        return [StagePlan("stage1", p.stage1_iterations or t.iterations, t.batch_size, 0),
                StagePlan("stage2", p.stage2_iterations or t.iterations, t.labeled_bs, t.unlabeled_bs)]

    def attach_run(self, run: Any) -> None:
        """Called once by the engine with the run's datasets: the cached teacher needs each training
        sample's un-augmented image and its augmentation (``base_image``, ``aug_theta``)."""
        self._run = [run]
        if self._cached():
            for ds in (run.labeled_ds, run.unlabeled_ds):
                if ds is not None:
                    ds.keep_base = True

    def _cached(self) -> bool:
        from uncol.teachers.cache import CachedTeacher

        return isinstance(self.teacher, CachedTeacher) and self.cfg.teacher.mode == "cached"

    def _fill_cache(self) -> None:
        """Encode every (un-augmented) training image once, with a progress bar, so that every later
        step hits the cache. Random patches (``data.mode: patch``) are never the same twice: the
        teacher then runs online on each batch."""
        if not self._cached():
            return
        if self.cfg.data.mode == "patch":
            import warnings

            warnings.warn("teacher.mode is cached but data.mode is patch (random crops): encoding online",
                          stacklevel=2)
            self._teacher = [self.teacher.teacher]
            return
        run = self._run[0] if getattr(self, "_run", None) else None
        if run is None:
            return
        device = next(self.student.parameters()).device
        for ds in (run.labeled_ds, run.unlabeled_ds):
            if ds is not None:
                self.teacher.fill((ds.get_seeded(i, 0)["base_image"].to(device) for i in range(len(ds))),
                                  total=len(ds), progress=run.progress)

    @torch.no_grad()
    def _encode(self, part: dict) -> Any:
        """G's embedding of a batch part: from the cache of the un-augmented images, moved by the same
        affine transform as the images (exact for flips, close for rotations), or online."""
        from uncol.teachers.cache import warp_embedding

        if self._cached() and "aug_theta" in part:
            emb = self.teacher.encode(part["base_image"])
            theta = part["aug_theta"]
            identity = torch.eye(theta.shape[1], theta.shape[2], device=theta.device)
            return emb if torch.equal(theta, identity.expand_as(theta)) else warp_embedding(emb, theta)
        return self.teacher.encode(part["image"])

    def begin_stage(self, name: str, resumed: bool = False) -> None:
        super().begin_stage(name, resumed)
        if self.teacher is not None and not getattr(self, "_filled", False):
            self._fill_cache()
            self._filled = True
        if name == "stage2" and not resumed:
            self.ema.reset(self.student)  # S is initialised from the stage-1 student (SPEC §4)
            if self.params.ema_own_bn:
                self._recalibrate_bn(self.ema.module)
        if name == "stage2":
            self.ema.copy_buffers = not self.params.ema_own_bn

    def inference_model(self) -> nn.Module:
        """The student, prompt-free; its BatchNorm statistics recalibrated for inference if asked."""
        if self.params.recalibrate_bn:
            self._recalibrate_bn(self.student)
        return self.student

    @torch.no_grad()
    def _recalibrate_bn(self, model: nn.Module) -> None:
        """Recompute ``model``'s BatchNorm running statistics (cumulative average) from prompt-free
        forward passes over up to ``recalibrate_images`` training images."""
        if not getattr(self, "_run", None):
            return
        bns = _batchnorms(model)
        run = self._run[0]
        ds = [d for d in (run.labeled_ds, run.unlabeled_ds) if d is not None]
        items = [(d, i) for d in ds for i in range(len(d))][: self.params.recalibrate_images]
        if not bns or not items:
            return
        modes = [(m, m.training) for m in model.modules()]
        momenta = [(m, m.momentum) for m in bns]
        model.eval()
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the recalibration batches
            m.train()
        device = next(model.parameters()).device
        for k in range(0, len(items), 4):
            x = torch.stack([d.get_seeded(i, 0)["image"] for d, i in items[k:k + 4]]).to(device)
            model(x)
        for m, mo in momenta:
            m.momentum = mo
        for m, t in modes:
            m.training = t

    @torch.no_grad()
    def _update_bn(self, model: nn.Module, x: torch.Tensor) -> None:
        """One prompt-free pass of ``model`` with its BatchNorm layers in training mode: their running
        statistics move towards ``x``'s (B,C,*S) (dropout and the rest stay in eval mode)."""
        bns = _batchnorms(model)
        if not bns:
            return
        for m in bns:
            m.train()
        model(x)
        for m in bns:
            m.eval()

    def after_step(self, it: int, total: int) -> None:
        if not (self.stage == "stage2" and self.params.freeze_ema_stage2):
            self.ema.update(self.student)

    # -- teacher helpers -------------------------------------------------------------------------------
    @torch.no_grad()
    def _decode(self, emb: Any, masks: torch.Tensor, jitter: float, size: tuple[int, ...],
                entropy: torch.Tensor | None = None, tau: float | None = None) -> Any:
        """G's decoder prompted from ``masks`` (B,*S): boxes (2D, slice-wise) or points (3D); points are
        drawn inside the class, or inside its low-entropy region (``entropy`` < ``tau``) for
        pseudo-label prompts (SPEC §5)."""
        from uncol.teachers.prompts import prompts_from_masks

        g = self.teacher
        prompts = prompts_from_masks(masks, self.num_classes, kind=g.prompt_kind, jitter_px=jitter,
                                     generator=self._gen, entropy=entropy, entropy_threshold=tau)
        return g.decode(emb, prompts, self.num_classes, size)

    def _knowledge(self, fused: torch.Tensor, fused_grid: tuple[int, ...], grid: tuple[int, ...]) -> torch.Tensor:
        """G's fused tokens (B,M,d_t) pooled to the student grid -> (B,N,d_t)."""
        return resample_tokens(fused, grid, src_grid=fused_grid)

    # -- the two stages --------------------------------------------------------------------------------
    def train_step(self, batch: Batch, it: int, total: int) -> StepOutput:
        return self._stage1(batch, it, total) if self.stage == "stage1" else self._stage2(batch, it, total)

    def _stage1(self, batch: Batch, it: int, total: int) -> StepOutput:
        p = self.params
        x, y = batch.labeled["image"], batch.labeled["label"]
        # 1. copy-paste inside the labelled batch (60 % of a grid of patches from the next image)
        nd = self.spatial_dims
        m = grid_copy_paste_mask(tuple(x.shape[2:]), p.copy_paste_grid, p.copy_paste_ratio, self._gen).to(x.device)
        perm = torch.roll(torch.arange(x.shape[0], device=x.device), 1)
        xm, ym = mix(x[perm], x, m, spatial_dims=nd), mix(y[perm], y, m, spatial_dims=nd)
        grid = self.student.token_grid(tuple(x.shape[2:]))
        parts: dict[str, float] = {}
        lam = p.lambda_max * sigmoid_rampup(it, total)
        if self.teacher is None:
            out = self.student.forward_features(xm)
            loss = self._sup(out.logits, ym, parts)
            return StepOutput(loss, {"loss": loss.item(), **parts})
        # 2. generalized teacher, prompted with ground-truth boxes/points of the mixed image
        if not self._cached():
            emb = self.teacher.encode(xm)
        else:  # cached: the source images' features (cache hits), mixed with the same mask
            emb = self._encode(batch.labeled).map(
                lambda t: mix(t[perm], t, _resize_mask(m, t.shape[2:]), spatial_dims=nd))
        gout = self._decode(emb, ym, self.cfg.teacher.box_jitter_px, tuple(x.shape[2:]))
        know = self._knowledge(gout.fused, gout.fused_grid, grid)
        # 3. student with G's knowledge in the adapter
        out = self.student.forward_features(xm, teacher_knowledge=know)
        # 4. losses
        loss = self._sup(out.logits, ym, parts)
        dpkd = torch.zeros((), device=x.device)
        if p.visual_distill:
            l_vis = self._visual(out.vit_tokens, emb.visual, grid)
            dpkd = dpkd + l_vis
            parts["vis"] = l_vis.item()
        if p.semantic_distill:
            if p.semantic_space == "adapter":  # own inference key/value vs G's projected tokens, one space
                l_sem = F.mse_loss(self.student.own_knowledge(out.vit_tokens[-1], grid), out.knowledge)
            else:
                l_sem = semantic_distill_loss(out.vit_tokens[-1], know, grid, self.sem_proj, grid)
            dpkd = dpkd + l_sem
            parts["sem"] = l_sem.item()
        loss = loss + lam * dpkd
        return StepOutput(loss, {"loss": loss.item(), "lambda": lam, **parts})

    def _stage2(self, batch: Batch, it: int, total: int) -> StepOutput:
        p = self.params
        xl, yl = batch.labeled["image"], batch.labeled["label"]
        xu = batch.unlabeled["image"]
        if xl.shape[0] != xu.shape[0]:
            from uncol.errors import ConfigError

            raise ConfigError("BCP pairs labelled and unlabelled images: set train.labeled_bs equal to train.unlabeled_bs")
        grid = self.student.token_grid(tuple(xl.shape[2:]))
        tau = uapl_threshold(it, total, self.num_classes)
        # 1. teachers on the un-mixed unlabelled images: S (EMA student) then G prompted by S's pseudo-label
        with torch.no_grad():
            if p.ema_own_bn:
                self._update_bn(self.ema.module, torch.cat([xl, xu]))
            s_out = self.ema.module.forward_features(xu)
            p_s = torch.softmax(s_out.logits.float(), dim=1)
            s_label = p_s.argmax(1)
            if p.largest_component:
                from uncol.pseudo.uapl import largest_component

                s_label = largest_component(s_label, self.num_classes)
            if self.teacher is not None:
                emb_u, emb_l = self._encode(batch.unlabeled), self._encode(batch.labeled)
                g_u = self._decode(emb_u, s_label, p.stage2_box_jitter_px, tuple(xu.shape[2:]),
                                   entropy(p_s, dim=1), tau)
                g_l = self._decode(emb_l, yl, self.cfg.teacher.box_jitter_px, tuple(xl.shape[2:]))
                p_g = g_u.probs.float()
            else:
                p_g = p_s
            # 2. pseudo-label fusion (UAPL / S-only / average)
            mode = p.pseudo_label if self.teacher is not None else "s_only"
            pl = fuse(p_g, p_s, tau, mode=mode)
        # 3. bidirectional copy-paste with one mask K (1 inside the block taken from the labelled image)
        nd = self.spatial_dims
        k = bcp_mask(tuple(xl.shape[2:]), p.bcp_ratio, self._gen).to(xl.device)  # True: from the 1st argument
        x_in, x_out = mix(xl, xu, k, spatial_dims=nd), mix(xu, xl, k, spatial_dims=nd)
        y_in, y_out = mix(yl, pl.label, k, spatial_dims=nd), mix(pl.label, yl, k, spatial_dims=nd)
        kb = k.expand_as(pl.mask)
        gt_in, gt_out = kb, ~kb  # where the pixel came from the labelled image
        pm_in, pm_out = ~kb & pl.mask, kb & pl.mask  # confident pseudo-labelled pixels from the unlabelled one
        x_mix = torch.cat([x_in, x_out])
        y_mix = torch.cat([y_in, y_out])
        gt_region, pl_region = torch.cat([gt_in, gt_out]), torch.cat([pm_in, pm_out])
        # 4. student: adapter fed by G (labelled source) and S (unlabelled source), or by S on the mixed image
        if p.stage2_knowledge == "specialized" or self.teacher is None:
            with torch.no_grad():
                s_mix = self.ema.module.forward_features(x_mix).vit_tokens[-1]
            out = self.student.forward_features(x_mix, vit_knowledge=s_mix)
        else:
            know_l = self._knowledge(g_l.fused, g_l.fused_grid, grid)
            s_tokens = s_out.vit_tokens[-1]
            out = self.student.forward_features(x_mix, teacher_knowledge=torch.cat([know_l, know_l]),
                                                vit_knowledge=torch.cat([s_tokens, s_tokens]))
        # 5. losses: GT part + β · UAPL part + λ(t) · L_vis
        parts: dict[str, float] = {}
        l_sup = 0.5 * (ce_loss(out.logits, y_mix, gt_region) + dice_loss(out.logits, y_mix, gt_region))
        l_pl = ce_loss(out.logits, y_mix, pl_region) + dice_loss(out.logits, y_mix, pl_region)
        loss = l_sup + p.beta * l_pl
        parts.update(sup=l_sup.item(), uapl=l_pl.item(), tau=float(tau), pl_coverage=pl.mask.float().mean().item())
        if self.teacher is not None and p.visual_distill:
            vis_in = [mix(a, b, _resize_mask(k, a.shape[2:]), spatial_dims=nd) for a, b in zip(emb_l.visual, emb_u.visual)]
            vis_out = [mix(b, a, _resize_mask(k, a.shape[2:]), spatial_dims=nd) for a, b in zip(emb_l.visual, emb_u.visual)]
            l_vis = self._visual(out.vit_tokens, [torch.cat([a, b]) for a, b in zip(vis_in, vis_out)], grid)
            lam = p.lambda_max * sigmoid_rampup(it, total)
            loss = loss + lam * l_vis
            parts["vis"] = l_vis.item()
        return StepOutput(loss, {"loss": loss.item(), **parts})

    # -- pieces ----------------------------------------------------------------------------------------
    def _sup(self, logits: torch.Tensor, y: torch.Tensor, parts: dict[str, float]) -> torch.Tensor:
        ce, dice = ce_loss(logits, y), dice_loss(logits, y)
        parts.update(ce=ce.item(), dice=dice.item())
        return 0.5 * (ce + dice)

    def _visual(self, tokens: list[torch.Tensor], feats: list[torch.Tensor], grid: tuple[int, ...]) -> torch.Tensor:
        pairs = self.params.layer_map
        return visual_distill_loss([tokens[i - 1] for i, _ in pairs], [feats[j] for _, j in pairs],
                                   list(self.vis_proj), grid)


def _batchnorms(model: nn.Module) -> list[nn.Module]:
    """The BatchNorm layers of ``model``."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _resize_mask(k: torch.Tensor, size: Any) -> torch.Tensor:
    """A (*S) 0/1 mask resampled (nearest) to a feature grid ``size``."""
    return F.interpolate(k.float()[None, None], size=tuple(size), mode="nearest")[0, 0].to(k.dtype)
