"""The UnCoL student: SimpleViT + U-Net (2D) / V-Net (3D) + cross-attention knowledge adapter.

    x ──► CNN encoder ──► bottleneck (B, 256, *G) ──► adapter(q=bottleneck, kv=knowledge) ──► CNN decoder ──► heads ──► mean ──► logits
    x ──► SimpleViT (4 layers, patch 16, grid G) ──► final norm [──► neck] ──► own knowledge (B, N, 256)

``forward(x) -> logits`` is prompt-free (the adapter reads the student's own last ViT layer).
``forward_features(x, teacher_knowledge=None, vit_knowledge=None) -> StudentOutput``; the
adapter's key/value is (SPEC §1; when both are passed — a BCP-mixed image in stage 2 — the two projected
sequences are concatenated, ours):
  * ``teacher_knowledge (B, M, teacher_dim)``: the generalized teacher's prompt-fused tokens, through
    the training-only ``teacher_kv_proj`` Linear(teacher_dim -> kv width) (not counted in the size);
  * ``vit_knowledge (B, N, vit_dim)``: the specialized teacher's last-layer tokens, i.e. the EMA
    student's ``StudentOutput.vit_tokens[-1]``, mapped by this student's final norm (+ neck) like its own;
  * else its own ``vit_tokens[-1]`` (inference).

Sizes (paper Table 7: 2D 3.53 M / 3.60 GMACs at 256x256; 3D 13.94 M / 144.45 GMACs at 128^3).
The defaults are those of the authors' code (``CA_UNet.py``/``CA_VNet.py``: ViT width 128, 4 heads
of 64, MLP 256 and a neck to 256 channels in 2D; width 256, 4x64 heads, MLP 1024, no neck in 3D;
a single-head adapter of width 256; four output heads, averaged) and reproduce the paper's
figures; SPEC's "~192 in 2D" width is not needed. MACs by :func:`uncol.eval.efficiency.count_macs`:
``paper`` = conv + linear MACs in thop's convention (what the paper's tables use; a stride-2
transposed conv counts 2^d times its exact MACs), ``exact`` = conv + linear MACs exactly;
batch 1, 1 input channel; ``teacher_kv_proj`` (65,792 params, training only) excluded.
Measured (``benchmarks/profile_sizes.py``):

| 2D, 256x256, K=5 (OASIS)                          | params    | GMACs paper | GMACs exact |
|---------------------------------------------------|-----------|-------------|-------------|
| U-Net encoder + decoder (no head)                 | 1,813,184 | 2.912       | 2.912       |
| 4 output heads (3x3 conv 16->5)                   | 2,900     | 0.189       | 0.189       |
| SimpleViT (patch embedding, 4 layers, final norm) | 823,936   | 0.210       | 0.210       |
| neck (1x1 128->256, LN, 3x3 256->256, LN)         | 623,616   | 0.159       | 0.159       |
| adapter (q, k, v, out Linear 256->256)            | 263,168   | 0.067       | 0.067       |
| **student** (paper: 3.53 M, 3.60 G)               | **3,526,804** (-0.1 %) | **3.537** (-1.8 %) | 3.537 |

| 3D, 128^3, K=3 (ImageTBAD)                        | params    | GMACs paper | GMACs exact |
|---------------------------------------------------|-----------|-------------|-------------|
| V-Net encoder + decoder (no head)                 | 9,441,872 | 83.349      | 69.256      |
| 4 heads (conv3-BN-ReLU 16->16, dropout, 1x1 16->3)| 28,044    | 58.385      | 58.385      |
| SimpleViT (patch embedding, 4 layers, final norm) | 4,212,992 | 2.147       | 2.147       |
| adapter (q, k, v, out Linear 256->256)            | 263,168   | 0.134       | 0.134       |
| **student** (paper: 13.94 M, 144.45 G)            | **13,946,076** (+0.0 %) | **144.016** (-0.3 %) | 129.923 (-10.1 %) |

With ``out_heads=1`` (one plain backbone head) the 3D student would cost 100.2 G (paper
convention): the four heads at full resolution are what the paper's 144.45 G contains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor, nn

from uncol.config import from_dict
from uncol.errors import ConfigError
from uncol.models import blocks
from uncol.models.adapter import KnowledgeAdapter
from uncol.models.base import MODELS
from uncol.models.simplevit import SimpleViT


class StudentOutput(NamedTuple):
    """``logits (B, K, *S)`` (mean of the heads); ``vit_tokens``: one ``(B, N, vit_dim)`` per ViT layer;
    ``grid``: the token grid (``N = prod(grid)``); ``knowledge (B, M, kv_dim)``: the adapter's key/value
    as used; ``head_logits``: each head's logits (the authors' multi-head loss; only with ``each_head=True``)."""

    logits: Tensor
    vit_tokens: list[Tensor]
    grid: tuple[int, ...]
    knowledge: Tensor
    head_logits: list[Tensor]


# per-dimension defaults of the authors' code (SPEC §8)
_DEFAULTS = {
    2: {"backbone": "unet", "vit_dim": 128, "vit_mlp_dim": 256, "neck_dim": 256},
    3: {"backbone": "vnet", "vit_dim": 256, "vit_mlp_dim": 1024, "neck_dim": 0},
}


# the student's ``dropout`` switch expressed in each backbone's own params (an explicit
# ``backbone_params`` entry is overridden: the switch is the more specific request)
_DROPOUT_SWITCH = {
    "unet": lambda on: {} if on else {"dropout": [0.0] * 5},
    "vnet": lambda on: {"has_dropout": on},
}


@dataclass(frozen=True)
class StudentParams:
    """``model.params`` of ``uncol_student``; ``None`` = the per-dimension default above."""

    backbone: str | None = None  # unet (2D default) | vnet (3D default)
    backbone_params: dict = field(
        default_factory=dict
    )  # validated by the backbone (model.params.backbone_params)
    vit_dim: int | None = None  # authors' code: 128 (2D), 256 (3D); SPEC's "~192 in 2D" is not needed
    vit_depth: int = 4  # paper
    vit_heads: int = 4  # authors' code
    vit_dim_head: int = 64  # authors' code (lucidrains default)
    vit_mlp_dim: int | None = None  # authors' code: 256 (2D), 1024 (3D)
    neck_dim: int | None = None  # 0 = no neck; authors' code: 256 (2D), none (3D)
    adapter_heads: int = 1  # authors' code: single-head cross-attention
    out_heads: int = (
        4  # authors' code: 4 heads, averaged (needed for Table 7's MACs); 1 = the plain backbone head
    )
    teacher_dim: int = 256  # width of the generalized teacher's fused tokens (SAM family: 256)
    dropout: bool | None = None  # backbone dropout (MC-dropout); None = the backbone's default (on)


class UncolStudent(nn.Module):
    """See the module docstring. ``spatial_dims`` 2 or 3; input sizes divisible by 16."""

    def __init__(
        self,
        backbone: nn.Module,
        vit: SimpleViT,
        neck_dim: int = 0,
        adapter_heads: int = 1,
        out_heads: int = 4,
        teacher_dim: int = 256,
    ) -> None:
        super().__init__()
        d = vit.spatial_dims
        if vit.patch_size != backbone.reduction:
            raise ValueError(
                f"ViT patch {vit.patch_size} must equal the backbone's reduction {backbone.reduction}"
            )
        self.spatial_dims = d
        self.backbone, self.vit = backbone, vit
        kv_dim = neck_dim or vit.dim
        Conv = blocks.conv(d)
        self.neck: nn.Module | None = None
        if neck_dim:
            self.neck = nn.Sequential(
                Conv(vit.dim, neck_dim, kernel_size=1, bias=False),
                blocks.ChannelLayerNorm(neck_dim),
                Conv(neck_dim, neck_dim, kernel_size=3, padding=1, bias=False),
                blocks.ChannelLayerNorm(neck_dim),
            )
        self.adapter = KnowledgeAdapter(backbone.bottleneck_channels, kv_dim, adapter_heads)
        self.teacher_kv_proj = nn.Linear(teacher_dim, kv_dim)  # training only; excluded from sizes
        heads = [backbone.head] + [backbone.make_head() for _ in range(out_heads - 1)]
        backbone.head = nn.Identity()
        self.heads = nn.ModuleList(heads)

    @property
    def vit_dim(self) -> int:
        """Width of the per-layer ViT tokens (``StudentOutput.vit_tokens``)."""
        return self.vit.dim

    @property
    def kv_dim(self) -> int:
        """Width of the adapter's key/value (``StudentOutput.knowledge``): the neck width, else ``vit_dim``."""
        return self.adapter.kv_dim

    def token_grid(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        """The ViT token grid (= CNN bottleneck grid) for an input of spatial size ``spatial``."""
        blocks.check_divisible(tuple(spatial), self.vit.patch_size, "UncolStudent")
        return tuple(s // self.vit.patch_size for s in spatial)

    def own_knowledge(self, last_tokens: Tensor, grid: tuple[int, ...]) -> Tensor:
        """Last-layer ViT tokens ``(B, N, vit_dim)`` -> adapter key/value ``(B, N, kv_dim)`` (final norm [+ neck])."""
        x = self.vit.norm(last_tokens)
        if self.neck is None:
            return x
        b, n, c = x.shape
        if n != math.prod(grid):
            raise ValueError(f"knowledge tokens {tuple(x.shape)} do not fill the token grid {grid}")
        x = self.neck(x.transpose(1, 2).reshape(b, c, *grid))
        return x.flatten(2).transpose(1, 2)

    def forward_features(
        self, x: Tensor, teacher_knowledge: Tensor | None = None, vit_knowledge: Tensor | None = None,
        each_head: bool = False,
    ) -> StudentOutput:
        """``x (B, C, *S)`` -> :class:`StudentOutput`; see the module docstring for the key/value choice.
        ``head_logits`` is filled only when ``each_head`` is asked for (else ``[]``: see :meth:`mean_head`)."""
        feats = self.backbone.encode(x)
        tokens, grid = self.vit(x)
        if tuple(feats[-1].shape[2:]) != grid:
            raise ValueError(
                f"ViT grid {grid} differs from the CNN bottleneck grid {tuple(feats[-1].shape[2:])}"
            )
        if teacher_knowledge is not None:
            td = self.teacher_kv_proj.in_features
            if teacher_knowledge.dim() != 3 or teacher_knowledge.shape[-1] != td:
                raise ValueError(
                    f"teacher_knowledge must be (B, M, {td}) (model.params.teacher_dim), got {tuple(teacher_knowledge.shape)}"
                )
            kv = self.teacher_kv_proj(teacher_knowledge)
            if vit_knowledge is not None:
                # A BCP-mixed image has a labelled and an unlabelled source (ours): both knowledge
                # sequences, each through its own projection, are concatenated as the key/value.
                kv = torch.cat([kv, self.own_knowledge(vit_knowledge, grid)], dim=1)
        else:
            kv = self.own_knowledge(tokens[-1] if vit_knowledge is None else vit_knowledge, grid)
        feats[-1] = self.adapter(feats[-1], kv)
        dec = self.backbone.decode(feats)
        if each_head:
            head_logits = [h(dec) for h in self.heads]
            logits = head_logits[0] if len(head_logits) == 1 else torch.stack(head_logits).mean(0)
            return StudentOutput(logits, tokens, grid, kv, head_logits)
        return StudentOutput(self.mean_head(dec), tokens, grid, kv, [])

    def mean_head(self, dec: Tensor) -> Tensor:
        """The mean of the heads' logits on decoder features ``dec (B, C, *S)``.

        Heads that are plain convolutions of one shape (the 2D U-Net's) are linear, so their mean is ONE
        convolution with the mean weight and bias (same values and gradients, one full-resolution pass
        instead of ``out_heads``): done in training mode; in eval mode every head runs, as the authors'
        network does (what MAC counts and latency report). Other heads (the V-Net's conv-BN-ReLU-dropout)
        always run one by one."""
        heads = list(self.heads)
        if len(heads) == 1:
            return heads[0](dec)
        first = heads[0]
        if self.training and isinstance(first, nn.Conv2d | nn.Conv3d) and all(
                type(h) is type(first) and h.weight.shape == first.weight.shape and (h.bias is None) == (first.bias is None)
                and (h.stride, h.padding, h.dilation, h.groups) == (first.stride, first.padding, first.dilation, first.groups)
                for h in heads):
            weight = torch.stack([h.weight for h in heads]).mean(0)
            bias = None if first.bias is None else torch.stack([h.bias for h in heads]).mean(0)
            return first._conv_forward(dec, weight, bias)
        return torch.stack([h(dec) for h in heads]).mean(0)

    def forward(self, x: Tensor) -> Tensor:
        """Prompt-free inference: ``(B, C, *S) -> logits (B, K, *S)``."""
        return self.forward_features(x).logits


@MODELS.register("uncol_student")
def build_uncol_student(
    *, spatial_dims: int, in_channels: int, num_classes: int, params: dict
) -> UncolStudent:
    p = from_dict(StudentParams, params, prefix="model.params")
    dflt = _DEFAULTS[spatial_dims]
    name = p.backbone or dflt["backbone"]
    if name not in _DROPOUT_SWITCH:
        raise ConfigError(
            f"config key 'model.params.backbone' must be one of {', '.join(_DROPOUT_SWITCH)}, got {name!r}"
        )
    bparams = dict(p.backbone_params)
    if p.dropout is not None:
        bparams.update(_DROPOUT_SWITCH[name](p.dropout))
    try:
        backbone = MODELS.get(name)(
            spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes, params=bparams
        )
    except ConfigError as e:
        raise ConfigError(str(e).replace("model.params", "model.params.backbone_params")) from None
    if p.out_heads < 1 or p.vit_depth < 1:
        raise ConfigError("config keys 'model.params.out_heads' and 'model.params.vit_depth' must be >= 1")
    vit = SimpleViT(
        spatial_dims,
        in_channels,
        patch_size=backbone.reduction,
        dim=p.vit_dim or dflt["vit_dim"],
        depth=p.vit_depth,
        heads=p.vit_heads,
        dim_head=p.vit_dim_head,
        mlp_dim=p.vit_mlp_dim or dflt["vit_mlp_dim"],
    )
    neck = dflt["neck_dim"] if p.neck_dim is None else p.neck_dim
    return UncolStudent(backbone, vit, neck, p.adapter_heads, p.out_heads, p.teacher_dim)
