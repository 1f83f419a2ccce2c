"""MedSAM ViT-B: the paper's 2D teacher (SAM ViT-B with MedSAM's weights, ``medsam_vit_b.pth``).

Built from ``segment_anything.modeling`` parts exactly as ``build_sam_vit_b`` does (depth 12, width 768,
12 heads, global attention in blocks 3/6/9/12, window 14, patch 16, 1024² input), without SAM's
``@torch.no_grad`` forward. The official checkpoint is a plain state dict of ``Sam``
(``image_encoder.blocks.0.attn.qkv.weight`` ...); it is read with ``weights_only=True`` and loaded
strictly. It cannot be downloaded here: get it from https://github.com/bowang-lab/MedSAM (README,
"medsam_vit_b.pth" Google-Drive link).

Preprocessing as MedSAM's inference script: min-max to [0, 1], stretched to 1024×1024 (no SAM
pixel mean/std). Visual features for the layer map 1→4, 2→8, 3→12 (SPEC §2.1): the outputs of
blocks 4, 8 and 12 (1-indexed), ``(B, 768, 64, 64)`` each; embedding ``(B, 256, 64, 64)``.
``img_size`` is a parameter only so tests can run a random-weight model at a small input; the
official weights need 1024.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
from torch import Tensor

from uncol.errors import ConfigError
from uncol.teachers.base import TEACHERS
from uncol.teachers.checkpoints import file_sha256, load_strict, read_state_dict
from uncol.teachers.sam2d import SamTeacher2D
from uncol.teachers.weights import resolve_checkpoint

WHERE = ("https://github.com/bowang-lab/MedSAM (the medsam_vit_b.pth link in its README), or run "
         "`uncol weights fetch medsam_vit_b`")
WHAT = "MedSAM ViT-B (medsam_vit_b.pth)"


@dataclass(frozen=True)
class MedSAMParams:
    blocks: tuple[int, ...] = (4, 8, 12)  # 1-indexed ViT blocks of the layer map (paper: 1→4, 2→8, 3→12)
    img_size: int = 1024  # the official weights need 1024
    resize: Literal["stretch", "longest"] = "stretch"  # MedSAM's inference: stretch; longest: pad
    resample: Literal["bicubic", "bilinear", "bilinear_aa", "area"] = "bicubic"  # ours


@TEACHERS.register("medsam_vit_b")
class MedSAMTeacher(SamTeacher2D):
    """MedSAM (SAM ViT-B) behind the teacher interface; ``checkpoint`` is required."""

    Params = MedSAMParams

    def __init__(
        self, checkpoint: str | None, params: MedSAMParams = MedSAMParams(), state: dict | None = None
    ) -> None:
        """Load ``checkpoint`` strictly; ``state`` (a state dict already in memory) replaces the file."""
        if any(not 1 <= b <= 12 for b in params.blocks):
            raise ConfigError(
                f"config key 'teacher.params.blocks' must be 1-indexed ViT-B blocks 1..12, got {list(params.blocks)}"
            )
        if state is None:
            state = read_state_dict(checkpoint, WHAT, WHERE)  # fails first, before building 90 M parameters
            ckpt_id = f"sha256:{file_sha256(str(checkpoint))}"
        else:
            ckpt_id = f"in-memory:{checkpoint}"
        super().__init__(params.img_size, params.resize, params.resample, ckpt_id)
        self.image_encoder, self.prompt_encoder, self.mask_decoder = build_sam_vit_b_parts(params.img_size)
        load_strict(self, state, str(checkpoint), WHAT, WHERE)
        self.blocks = tuple(params.blocks)
        self.visual_dims = [768] * len(self.blocks)
        self.freeze()

    @classmethod
    def build(cls, checkpoint: str | None, params: MedSAMParams, spatial_dims: int) -> MedSAMTeacher:
        """``checkpoint`` null -> ``medsam_vit_b.pth`` in the weights folder (``uncol weights fetch medsam_vit_b``)."""
        return cls(resolve_checkpoint(checkpoint, "medsam_vit_b", WHAT), params)

    def fingerprint(self) -> str:
        return f"{super().fingerprint()}|blocks={','.join(map(str, self.blocks))}"

    def _encode_input(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """ViT-B forward keeping the chosen blocks' outputs: ``x (B, 3, S, S)``, S = img_size."""
        enc = self.image_encoder
        h = enc.patch_embed(x)  # (B, S/16, S/16, 768)
        if enc.pos_embed is not None:
            h = h + enc.pos_embed
        feats: list[Tensor] = []
        for i, blk in enumerate(enc.blocks, start=1):
            h = blk(h)
            if i in self.blocks:
                feats.append(h.permute(0, 3, 1, 2))
        return feats, enc.neck(h.permute(0, 3, 1, 2))


def build_sam_vit_b_parts(img_size: int = 1024) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """SAM ViT-B's image encoder, prompt encoder and mask decoder (``build_sam_vit_b``'s settings)."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, TwoWayTransformer

    grid = img_size // 16
    image_encoder = ImageEncoderViT(
        depth=12, embed_dim=768, img_size=img_size, mlp_ratio=4, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=12, patch_size=16, qkv_bias=True, use_rel_pos=True, global_attn_indexes=[2, 5, 8, 11],
        window_size=14, out_chans=256,
    )
    prompt_encoder = PromptEncoder(
        embed_dim=256, image_embedding_size=(grid, grid), input_image_size=(img_size, img_size), mask_in_chans=16
    )
    mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
        transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256,
    )
    return image_encoder, prompt_encoder, mask_decoder
