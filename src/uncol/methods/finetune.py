"""Foundation-model fine-tuning baselines (paper Table 6): LiteMedSAM's mask decoder, all of it, or LoRA.

The network trained is a copy of the 2D SAM-family teacher named by ``teacher.name`` (LiteMedSAM;
MedSAM ViT-B works the same way). It is trained on the labelled images prompted with ground-truth
boxes (jittered by ``train_jitter_px`` in MedSAM's 1024-px frame, MedSAM's training recipe) and
evaluated prompted with ground-truth boxes (tight by default, as in the paper). ``model`` in the
config is ignored: the method's "student" is the fine-tuned SAM.

- ``finetune_decoder`` (paper: "vanilla"): only the mask decoder trains; the image encoder is the
  frozen teacher's, so its features come from the teacher feature cache (``teacher.cache_dir``,
  filled once for the labelled images when ``data.augment.enabled`` is false and ``data.mode`` is
  not ``patch``) and each step costs a decoder pass only.
- ``finetune_full``: image encoder and mask decoder train (the prompt encoder stays frozen, as in
  MedSAM). The TinyViT attention biases stay frozen too: the teacher lives in eval mode, where TinyViT
  caches them as a buffer.
- ``finetune_lora``: rank-``lora_rank`` adapters on the image encoder's attention ``qkv``/``proj``
  linears (:class:`LoRALinear`, ``B`` zero-initialised so training starts at the pretrained model);
  with ``lora_train_decoder`` the mask decoder trains as well (SAMed's recipe).

Loss (ours): the teacher's multi-class probabilities (one box per present class, background
``prod(1 - p_c)``, renormalised; SPEC §3) scored by ``0.5 (CE + Dice)`` through ``log p`` — for one
class this is MedSAM's BCE + Dice. Prompted inference is not ``forward(x) -> logits``: these
checkpoints are scored by :func:`uncol.eval.prompted.evaluate_prompted` (``uncol bench`` does so for every
method whose class has ``prompted_eval = True``), which reuses :func:`uncol.eval.prompted.zero_shot`.
``peft`` was not used: it installs beside our torch but pulls in transformers/accelerate/tokenizers
and renames the state-dict keys; the adapter below is 30 lines.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from uncol.data.sampler import Batch
from uncol.errors import ConfigError
from uncol.losses.segmentation import ce_loss, dice_loss
from uncol.methods.base import METHODS, Method, MethodContext, StepOutput
from uncol.teachers.base import OUTPUTS, ClassPrompts, Teacher, TeacherEmbedding, TeacherOutput
from uncol.teachers.cache import CachedTeacher
from uncol.teachers.prompts import make_prompts

SAM_PARTS = ("image_encoder", "prompt_encoder", "mask_decoder")


# ------------------------------------------------------------------------------------------------ LoRA
class LoRALinear(nn.Module):
    """``y = base(x) + (alpha / r) * x A^T B^T``; ``base`` frozen, ``A (r, in)`` Kaiming-uniform, ``B (out, r)`` zero."""

    def __init__(self, base: nn.Linear, rank: int = 4, alpha: float = 4.0) -> None:
        super().__init__()
        if rank < 1:
            raise ConfigError(f"config key 'method.params.lora_rank' must be >= 1, got {rank}")
        self.base = base.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scaling = alpha / rank

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scaling

    def merged_weight(self) -> Tensor:
        """The plain ``Linear`` weight ``(out, in)`` equivalent to this adapter."""
        return self.base.weight + self.scaling * (self.lora_B @ self.lora_A)


def apply_lora(module: nn.Module, targets: Sequence[str] = ("qkv", "proj"), rank: int = 4, alpha: float = 4.0) -> int:
    """Replace every ``nn.Linear`` child named in ``targets`` (anywhere under ``module``) by a
    :class:`LoRALinear`; returns how many were replaced."""
    found = [(parent, name, child) for parent in module.modules() for name, child in parent.named_children()
             if name in targets and isinstance(child, nn.Linear)]
    for parent, name, child in found:
        setattr(parent, name, LoRALinear(child, rank, alpha))
    return len(found)


# ------------------------------------------------------------------------------------------- method
@dataclass(frozen=True)
class FinetuneParams:
    train_jitter_px: float = 20.0  # box jitter in MedSAM's 1024-px frame while training (MedSAM)
    eval_jitter_px: float = 0.0  # prompts at validation/test: tight ground-truth boxes (paper)
    lora_rank: int = 4  # ours
    lora_alpha: float = 4.0  # ours
    lora_targets: tuple[str, ...] = ("qkv", "proj")  # attention linears of the image encoder
    lora_train_decoder: bool = False  # SAMed also trains the mask decoder
    validate: bool = True  # prompted validation on the val split (else best.pt = final weights)


class PromptedModel(Teacher):
    """``encoder.encode`` + ``decoder.decode`` with the images moved to ``device``: a (fine-tuned) SAM as
    the teacher that :func:`uncol.eval.prompted.zero_shot` scores (it leaves images on the CPU)."""

    def __init__(self, encoder: Teacher, decoder: Teacher, device: torch.device) -> None:
        super().__init__()
        self._parts = [encoder, decoder]  # not submodules: no state of its own
        self.device = device
        self.spatial_dims = decoder.spatial_dims
        self.prompt_kind = decoder.prompt_kind
        self.embed_dim = decoder.embed_dim

    def fingerprint(self) -> str:
        return f"finetuned|{self._parts[1].fingerprint()}"

    def encode(self, images: Tensor) -> TeacherEmbedding:
        return self._parts[0].encode(images.to(self.device))

    def decode(self, emb: TeacherEmbedding, prompts: list[ClassPrompts], num_classes: int,
               out_size: tuple[int, ...], outputs: Collection[str] = OUTPUTS) -> TeacherOutput:
        return self._parts[1].decode(emb, prompts, num_classes, out_size, outputs)


class FinetuneSAM(Method):
    """Base of the three fine-tuning baselines; subclasses say what trains (:meth:`prepare_model`)."""

    Params = FinetuneParams
    needs_teacher = True
    uses_model_config = False  # the network trained is a copy of the teacher
    prompted_eval = True  # score with evaluate_prompted, not the prompt-free evaluate_checkpoint
    encoder_frozen = False  # True: training encodes through the frozen (cached) teacher

    def __init__(self, ctx: MethodContext, params: FinetuneParams) -> None:
        if ctx.spatial_dims != 2:
            raise ConfigError(f"method {ctx.cfg.method.name!r} fine-tunes a 2D SAM-family model: set data.spatial_dims: 2 "
                              "(3D volumes: data.mode: slices)")
        super().__init__(ctx, params)
        base = _unwrap(self.teacher)
        if not all(hasattr(base, p) for p in SAM_PARTS):
            raise ConfigError(f"config key 'teacher.name': {ctx.cfg.teacher.name!r} is not a SAM-family 2D teacher "
                              "(litemedsam, medsam_vit_b); fine-tuning needs its image encoder and mask decoder")
        sam = copy.deepcopy(base)  # frozen copy; prepare_model unfreezes what trains
        self.prepare_model(sam, params)
        self.student = sam  # what checkpoints hold; ctx.model is not used
        self._gen = torch.Generator().manual_seed(ctx.cfg.train.seed + 23)

    @classmethod
    def prepare_model(cls, sam: nn.Module, params: FinetuneParams) -> None:  # pragma: no cover - abstract
        """Give ``sam`` (frozen) the structure and ``requires_grad`` flags of this baseline."""
        raise NotImplementedError

    # -- run hooks ---------------------------------------------------------------------------------
    def attach_run(self, run: Any) -> None:
        """Keep the run: its labelled dataset fills the teacher cache (:meth:`begin_stage`)."""
        self._run = [run]

    def validates(self) -> bool:
        return self.params.validate

    def validate(self, run: Any) -> dict[str, float]:
        """Prompted validation: ground-truth boxes (``eval_jitter_px``) on the run's validation cases."""
        return run.validate_prompted(self.prompted_teacher(), self.params.eval_jitter_px)

    def begin_stage(self, name: str, resumed: bool = False) -> None:
        super().begin_stage(name, resumed)
        if self.encoder_frozen and not getattr(self, "_filled", False):
            self._fill_cache()
            self._filled = True

    def _fill_cache(self) -> None:
        """Encode the labelled training images once when the cache can serve every later step."""
        run = self._run[0] if getattr(self, "_run", None) else None
        d = self.cfg.data
        if run is None or not isinstance(self.teacher, CachedTeacher) or d.augment.enabled or d.mode == "patch":
            return
        ds, dev = run.labeled_ds, self._device()
        self.teacher.fill((ds.get_seeded(i, 0)["image"].to(dev) for i in range(len(ds))), total=len(ds),
                          progress=run.progress)

    def _device(self) -> torch.device:
        return next(self.student.parameters()).device

    def prompted_teacher(self) -> Teacher:
        """The fine-tuned model as a teacher (encoder: the cached frozen one when it did not train)."""
        enc = self.teacher if self.encoder_frozen else self.student
        return PromptedModel(enc, self.student, self._device())

    # -- training ----------------------------------------------------------------------------------
    def train_step(self, batch: Batch, it: int, total: int) -> StepOutput:
        x, y = batch.labeled["image"], batch.labeled["label"]
        prompts = make_prompts(y, self.num_classes, "box", jitter_px=self.params.train_jitter_px, generator=self._gen)
        if self.encoder_frozen:
            with torch.no_grad():
                emb = self.teacher.encode(x)
        else:
            emb = self.student.encode(x)
        out = self.student.decode(emb, prompts, self.num_classes, tuple(x.shape[2:]))
        if not bool(out.prompted[:, 1:].any()):
            # No foreground in any image (e.g. background slices of a volume): no box, nothing to learn.
            # A zero loss tied to the trainable weights keeps the shared loop's backward/step valid.
            zero = sum((p.sum() * 0.0 for p in self.student.parameters() if p.requires_grad),
                       torch.zeros((), device=x.device))
            return StepOutput(zero, {"loss": 0.0, "ce": 0.0, "dice": 0.0, "skipped": 1.0})
        logp = out.probs.clamp_min(1e-6).log()  # softmax(log p) = p: the losses see the probabilities
        ce, dice = ce_loss(logp, y), dice_loss(logp, y)
        loss = 0.5 * (ce + dice)
        return StepOutput(loss, {"loss": loss.item(), "ce": ce.item(), "dice": dice.item()})


@METHODS.register("finetune_decoder")
class FinetuneDecoder(FinetuneSAM):
    """Vanilla fine-tuning: the mask decoder only."""

    encoder_frozen = True

    @classmethod
    def prepare_model(cls, sam: nn.Module, params: FinetuneParams) -> None:
        sam.mask_decoder.requires_grad_(True)


@METHODS.register("finetune_full")
class FinetuneFull(FinetuneSAM):
    """Full fine-tuning: image encoder + mask decoder (prompt encoder and TinyViT attention biases frozen)."""

    @classmethod
    def prepare_model(cls, sam: nn.Module, params: FinetuneParams) -> None:
        sam.image_encoder.requires_grad_(True)
        sam.mask_decoder.requires_grad_(True)
        for name, p in sam.image_encoder.named_parameters():
            if name.endswith("attention_biases"):
                p.requires_grad_(False)


@METHODS.register("finetune_lora")
class FinetuneLoRA(FinetuneSAM):
    """LoRA on the image encoder's attention linears (+ the mask decoder with ``lora_train_decoder``)."""

    @classmethod
    def prepare_model(cls, sam: nn.Module, params: FinetuneParams) -> None:
        n = apply_lora(sam.image_encoder, params.lora_targets, params.lora_rank, params.lora_alpha)
        if n == 0:
            raise ConfigError(f"config key 'method.params.lora_targets': no nn.Linear named {list(params.lora_targets)} "
                              "in the image encoder")
        if params.lora_train_decoder:
            sam.mask_decoder.requires_grad_(True)


def _unwrap(teacher: nn.Module | None) -> nn.Module | None:
    return teacher.teacher if isinstance(teacher, CachedTeacher) else teacher
