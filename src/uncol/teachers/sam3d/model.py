"""The ``Sam3D`` container (``image_encoder`` / ``prompt_encoder`` / ``mask_decoder``) and its config.

``Sam3DConfig()`` is the official ``vit_b_ori`` (SAM-Med3D, SAM-Med3D-turbo): 128³ input, patch 16,
ViT-B (width 768, depth 12, 12 heads, global attention in blocks 2, 5, 8, 11, window 14,
relative positions), prompt/decoder width 384, mask logits at 32³. Smaller configs exist for tests.
The official container's ``pixel_mean``/``pixel_std`` are non-persistent buffers (not in the checkpoint)
and unused by SAM-Med3D's own pipeline, so they are omitted here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor, nn

from uncol.teachers.sam3d.image_encoder3d import ImageEncoderViT3D
from uncol.teachers.sam3d.mask_decoder3d import MaskDecoder3D
from uncol.teachers.sam3d.prompt_encoder3d import PromptEncoder3D


@dataclass(frozen=True)
class Sam3DConfig:
    """Architecture hyper-parameters; the defaults are the official ``vit_b_ori``."""

    img_size: int = 128
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    prompt_dim: int = 384  # image-embedding width = prompt/decoder width (out_chans)
    mask_in_chans: int = 16
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    feature_blocks: tuple[int, ...] = field(default=(3, 7, 11))  # 0-indexed blocks 4, 8, 12

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size


class Sam3D(nn.Module):
    """SAM-Med3D: encode a (B, 1, S, S, S) volume once, then answer point prompts cheaply."""

    def __init__(self, cfg: Sam3DConfig = Sam3DConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        g = cfg.grid
        self.image_encoder = ImageEncoderViT3D(
            img_size=cfg.img_size, patch_size=cfg.patch_size, in_chans=1, embed_dim=cfg.embed_dim,
            depth=cfg.depth, num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio, out_chans=cfg.prompt_dim,
            qkv_bias=True, use_rel_pos=True, window_size=cfg.window_size,
            global_attn_indexes=cfg.global_attn_indexes,
        )
        self.prompt_encoder = PromptEncoder3D(
            embed_dim=cfg.prompt_dim, image_embedding_size=(g, g, g),
            input_image_size=(cfg.img_size,) * 3, mask_in_chans=cfg.mask_in_chans,
        )
        self.mask_decoder = MaskDecoder3D(
            transformer_dim=cfg.prompt_dim, num_multimask_outputs=cfg.num_multimask_outputs,
            iou_head_depth=cfg.iou_head_depth, iou_head_hidden_dim=cfg.iou_head_hidden_dim,
        )

    def encode(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """x (B, 1, S, S, S) preprocessed → (embedding (B, prompt_dim, g, g, g), features of ``feature_blocks``)."""
        return self.image_encoder.forward_with_blocks(x, self.cfg.feature_blocks)

    def decode(self, embedding: Tensor, points: tuple[Tensor, Tensor] | None,
               mask_input: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """One prompt set per row of ``embedding`` (B, prompt_dim, g, g, g).

        points: (coords (B, N, 3) voxel indices in the S³ input frame, torch axis order; labels (B, N), 1/0)
        or None. mask_input: (B, 1, 4g, 4g, 4g) previous low-res logits (zeros for a first click, as the
        official inference does) or None (``no_mask_embed``).
        Returns (low-res logits (B, 1, 4g, 4g, 4g), IoU prediction (B, 1), image tokens (B, g³, prompt_dim)).
        """
        return decode_prompts(self.prompt_encoder, self.mask_decoder, embedding, points, mask_input)

    def forward(self, x: Tensor, points: tuple[Tensor, Tensor], mask_input: Tensor | None = None) -> Tensor:
        """Full pass: logits (B, 1, S, S, S) (32³ low-res logits upsampled trilinearly to the input)."""
        emb, _ = self.encode(x)
        logits, _, _ = self.decode(emb, points, mask_input)
        return F.interpolate(logits, size=x.shape[2:], mode="trilinear", align_corners=False)


def decode_prompts(prompt_encoder: PromptEncoder3D, mask_decoder: MaskDecoder3D, embedding: Tensor,
                   points: tuple[Tensor, Tensor] | None, mask_input: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Prompt encoder + mask decoder for one prompt set per embedding row (see :meth:`Sam3D.decode`)."""
    sparse, dense = prompt_encoder(points, mask_input, batch=embedding.shape[0])
    return mask_decoder(embedding, prompt_encoder.get_dense_pe(), sparse, dense)


def build_sam3d(cfg: Sam3DConfig | None = None) -> Sam3D:
    """The official ``vit_b_ori`` for ``cfg=None``."""
    return Sam3D(cfg or Sam3DConfig())
