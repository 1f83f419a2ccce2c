"""SAM-Med3D (``vit_b_ori``; SAM-Med3D-turbo) as UnCoL's 3D generalized teacher (SPEC §1, §2, §5).

Architecture: :mod:`uncol.teachers.sam3d` (our implementation; the teacher's state dict has the official
key layout: ``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``, 324 tensors, 100.5 M values).
Weights: the official file (``sam_med3d_turbo.pth``, or the original ``sam_med3d.pth``) from
https://github.com/uni-medical/SAM-Med3D (README "Checkpoint": Hugging Face ``blueyo0/SAM-Med3D`` or
Google Drive). It is a training checkpoint whose weights sit under ``model_state_dict``; a plain state
dict is accepted too. It is read with ``torch.load(weights_only=True)``; the training extras the official
``train.py`` pickles next to the weights (``args``: an ``argparse.Namespace``; numpy scalars in the loss
history) are allow-listed for that safe loader and nothing else. Anything else it refuses is reported
with a one-line conversion recipe, never loaded unsafely.

Preprocessing (official pipeline: 1.5 mm resampling, a 128³ crop around the label, then TorchIO
``ZNormalization`` over voxels > 0): the student's input ``(B, C, D, H, W)`` is reduced to one channel
(channel mean), resized to ``img_size``³ (trilinear) and z-scored per volume over its "foreground".
``intensity="above_min"`` (default, ours) takes the voxels above the volume's minimum, which equals the
official ``> 0`` mask for non-negative images with a zero background under any positive affine
re-normalisation of the data layer; ``"positive"`` is the official mask on the values as given;
``"all"`` uses every voxel. Points are mapped from the input frame to the 128³ frame by voxel centres.

Outputs: ``.visual`` = blocks 4, 8, 12 (1-indexed) ``(B, 768, 8, 8, 8)``; ``.embedding``
``(B, 384, 8, 8, 8)``; per prompted class the single-mask logits ``(1, 32, 32, 32)`` upsampled
trilinearly to ``out_size``, sigmoid, combined by :func:`combine_class_probs`; ``.fused`` the two-way
transformer's image tokens ``(B, 512, 384)`` averaged over the prompted classes (an image without any
prompt gets the prompt-free decoder run, which SAM-Med3D's training also uses). The decoder gets the
zero low-resolution mask prompt that the official first click gets (``mask_input="zeros"``) or
``no_mask_embed`` (``"none"``).
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from uncol.errors import ConfigError
from uncol.teachers.base import (
    OUTPUTS,
    TEACHERS,
    ClassPrompts,
    Teacher,
    TeacherEmbedding,
    TeacherOutput,
    combine_class_probs,
)
from uncol.teachers.checkpoints import file_sha256, load_strict, read_state_dict, training_globals
from uncol.teachers.sam3d.model import Sam3D, Sam3DConfig, decode_prompts
from uncol.teachers.weights import resolve_checkpoint

WHERE = ("https://github.com/uni-medical/SAM-Med3D (README 'Checkpoint': sam_med3d_turbo.pth on Hugging Face "
         "blueyo0/SAM-Med3D or Google Drive; the original sam_med3d.pth likewise), or run "
         "`uncol weights fetch sam_med3d_turbo`")
WHAT = "SAM-Med3D vit_b_ori (sam_med3d_turbo.pth / sam_med3d.pth)"


@dataclass(frozen=True)
class SamMed3DParams:
    blocks: tuple[int, ...] = (4, 8, 12)  # 1-indexed ViT blocks of the layer map (paper: 1→4, 2→8, 3→12)
    # z-score mask: above_min (ours) | positive (official on raw data) | all
    intensity: Literal["above_min", "positive", "all"] = "above_min"
    mask_input: Literal["zeros", "none"] = "zeros"  # official: zeros (the first click); none: no_mask_embed


def read_sam_med3d_state(path: str | Path | None) -> dict[str, Tensor]:
    """The model weights of an official SAM-Med3D file (``model_state_dict`` or a plain state dict)."""
    return read_state_dict(path, WHAT, WHERE, inner_key="model_state_dict", allowed_globals=training_globals(),
                           strip_prefix="module.")


@TEACHERS.register("sam_med3d")
class SamMed3DTeacher(Teacher):
    """SAM-Med3D behind the teacher interface; ``checkpoint`` is required. ``arch`` exists for tests."""

    Params = SamMed3DParams
    spatial_dims = 3
    embed_dim = 384
    prompt_kind = "points"

    def __init__(self, checkpoint: str | None, params: SamMed3DParams = SamMed3DParams(),
                 arch: Sam3DConfig | None = None) -> None:
        super().__init__()
        arch = arch or Sam3DConfig()
        if any(not 1 <= b <= arch.depth for b in params.blocks):
            raise ConfigError(f"config key 'teacher.params.blocks' must be 1-indexed ViT blocks 1..{arch.depth}, "
                              f"got {list(params.blocks)}")
        state = read_sam_med3d_state(checkpoint)  # fails first, before building 100 M parameters
        sam = Sam3D(arch)
        self.image_encoder, self.prompt_encoder, self.mask_decoder = sam.image_encoder, sam.prompt_encoder, sam.mask_decoder
        load_strict(self, state, str(checkpoint), WHAT, WHERE)
        self.arch, self.params = arch, params
        self.img_size = arch.img_size
        self.blocks = tuple(params.blocks)
        self.visual_dims = [arch.embed_dim] * len(self.blocks)
        self.embed_dim = arch.prompt_dim
        self.checkpoint_id = f"sha256:{file_sha256(str(checkpoint))}"
        self.freeze()

    @classmethod
    def build(cls, checkpoint: str | None, params: SamMed3DParams, spatial_dims: int) -> SamMed3DTeacher:
        if spatial_dims != 3:
            raise ConfigError("teacher 'sam_med3d' is a 3D teacher; for 2D data choose litemedsam or medsam_vit_b")
        return cls(resolve_checkpoint(checkpoint, "sam_med3d", WHAT), params)  # null -> sam_med3d_turbo.pth

    def fingerprint(self) -> str:
        return (f"{type(self).__name__}|ckpt={self.checkpoint_id}|size={self.img_size}|trilinear"
                f"|zscore={self.params.intensity}|blocks={','.join(map(str, self.blocks))}")

    # --- preprocessing ------------------------------------------------------------------------
    def preprocess(self, images: Tensor) -> Tensor:
        """``(B, C, D, H, W)`` → ``(B, 1, S, S, S)`` z-scored per volume (S = img_size; module doc)."""
        x = images.float()
        x = x.mean(dim=1, keepdim=True) if x.shape[1] != 1 else x
        if tuple(x.shape[2:]) != (self.img_size,) * 3:
            x = F.interpolate(x, size=(self.img_size,) * 3, mode="trilinear", align_corners=False)
        flat = x.flatten(1)
        if self.params.intensity == "above_min":
            mask = flat > flat.min(dim=1, keepdim=True).values
        elif self.params.intensity == "positive":
            mask = flat > 0
        else:
            mask = torch.ones_like(flat, dtype=torch.bool)
        mask = torch.where(mask.sum(1, keepdim=True) > 1, mask, torch.ones_like(mask))  # degenerate: all voxels
        n = mask.sum(1, keepdim=True).float()
        mean = (flat * mask).sum(1, keepdim=True) / n
        var = (((flat - mean) * mask) ** 2).sum(1, keepdim=True) / (n - 1).clamp_min(1.0)  # unbiased, as TorchIO
        return ((flat - mean) / var.sqrt().clamp_min(1e-8)).view_as(x)

    # --- the two calls ------------------------------------------------------------------------
    def encode(self, images: Tensor) -> TeacherEmbedding:
        """images ``(B, C, D, H, W)`` → visual ``[(B, 768, 8, 8, 8)] × 3``, embedding ``(B, 384, 8, 8, 8)``."""
        if images.dim() != 5:
            raise ValueError(f"SAM-Med3D takes 3D images (B, C, D, H, W), got shape {tuple(images.shape)}")
        keep = tuple(b - 1 for b in self.blocks)
        embedding, visual = self.image_encoder.forward_with_blocks(self.preprocess(images), keep)
        return TeacherEmbedding(visual, embedding, tuple(images.shape[2:]))

    def _to_model_frame(self, coords: Tensor, size: tuple[int, ...]) -> Tensor:
        """(P, 3) voxel indices of an image of ``size`` → indices in the img_size³ frame (voxel centres kept)."""
        scale = torch.tensor([self.img_size / s for s in size], dtype=torch.float32, device=coords.device)
        return (coords.float() + 0.5) * scale - 0.5

    def decode(self, emb: TeacherEmbedding, prompts: list[ClassPrompts], num_classes: int,
               out_size: tuple[int, ...], outputs: Collection[str] = OUTPUTS) -> TeacherOutput:
        """Probabilities ``(B, K, *out_size)``; fused tokens ``(B, 512, 384)`` on the 8³ grid (``outputs``:
        what the caller uses; an image without prompts is decoded only when ``"fused"`` is asked for)."""
        b = emb.batch_size
        if len(prompts) != b:
            raise ValueError(f"decode got {len(prompts)} ClassPrompts for a batch of {b} images")
        dev = self.mask_decoder.iou_token.weight.device
        jobs: list[tuple[int, int, Tensor | None, Tensor | None]] = []  # image, class (0: none), coords, labels
        for i, cp in enumerate(prompts):
            classes = [c for c in sorted(cp.points) if 0 < c < num_classes and len(cp.points[c].labels) > 0]
            for c in classes:
                p = cp.points[c]
                jobs.append((i, c, self._to_model_frame(p.coords.to(dev), emb.image_size), p.labels.to(dev).long()))
            if not classes and "fused" in outputs:
                jobs.append((i, 0, None, None))
        g = tuple(emb.embedding.shape[2:])
        logits_all: list[Tensor] = [torch.empty(0)] * len(jobs)
        tokens_all: list[Tensor] = [torch.empty(0)] * len(jobs)
        groups = sorted({-1 if j[2] is None else len(j[2]) for j in jobs})
        for n in groups:  # one decoder batch per number of points (padding would change SAM's output)
            idx = [k for k, j in enumerate(jobs) if (-1 if j[2] is None else len(j[2])) == n]
            rows = torch.tensor([jobs[k][0] for k in idx], device=emb.embedding.device)
            embedding = emb.embedding[rows].to(dev, torch.float32)
            points = None if n < 0 else (torch.stack([jobs[k][2] for k in idx]), torch.stack([jobs[k][3] for k in idx]))
            mask_in = None
            if self.params.mask_input == "zeros":
                mask_in = torch.zeros(len(idx), 1, *(4 * s for s in g), device=dev)
            logits, _, tokens = decode_prompts(self.prompt_encoder, self.mask_decoder, embedding, points, mask_in)
            for r, k in enumerate(idx):
                logits_all[k], tokens_all[k] = logits[r], tokens[r]
        fg = torch.zeros(b, num_classes - 1, *out_size, device=dev)
        prompted = torch.zeros(b, num_classes, dtype=torch.bool, device=dev)
        fused = torch.zeros(b, *tokens_all[0].shape, device=dev) if jobs else None
        count = torch.zeros(b, device=dev)
        for (i, c, _, _), lg, tok in zip(jobs, logits_all, tokens_all):
            fused[i] += tok  # type: ignore[index]
            count[i] += 1
            if c > 0:
                if "probs" in outputs:
                    up = F.interpolate(lg[None], size=tuple(out_size), mode="trilinear", align_corners=False)
                    fg[i, c - 1] = torch.sigmoid(up)[0, 0]
                prompted[i, c] = True
        probs = combine_class_probs(fg, prompted[:, 1:]) if "probs" in outputs else None
        fused = fused / count.clamp_min(1).view(-1, 1, 1) if fused is not None and "fused" in outputs else None
        return TeacherOutput(probs, fused, g, prompted, fg if probs is not None else None)
