"""SAM-Med3D mask decoder: two-way transformer + hypernetwork mask head (outputs at 4× the embedding grid).

Facts from the official ``mask_decoder3D.py`` (names/shapes for a strict load; our own code):
- ``transformer``: depth 2, width = transformer_dim (384), 8 heads, MLP 2048 (ReLU); cross-attentions
  project to width/2 (``attention_downsample_rate`` 2); each layer has ``self_attn``, ``norm1``,
  ``cross_attn_token_to_image``, ``norm2``, ``mlp.lin1/lin2``, ``norm3``, ``norm4``,
  ``cross_attn_image_to_token``; then ``final_attn_token_to_image`` + ``norm_final_attn``.
  The first layer's self-attention skips the query positional encoding.
- Output tokens ``iou_token`` (1, w) and ``mask_tokens`` (4, w) are prepended to the sparse prompts.
- ``output_upscaling``: ConvTranspose3d(w, w/4, 2, s2) → LayerNorm3d → GELU → ConvTranspose3d(w/4, w/8, 2, s2) → GELU.
- ``output_hypernetworks_mlps.i`` (i < 4): MLP w → w → w → w/8; ``iou_prediction_head``: MLP w → 256 → 256 → 4.
- Single-mask output (``multimask_output=False``, as SAM-Med3D trains and infers) = mask token 0.
"""
from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from uncol.teachers.sam3d.image_encoder3d import LayerNorm3d, MLPBlock


class TokenAttention(nn.Module):
    """Attention with separate q/k/v projections to ``dim // downsample`` and an output projection."""

    def __init__(self, dim: int, heads: int, downsample: int = 1) -> None:
        super().__init__()
        inner = dim // downsample
        if inner % heads:
            raise ValueError(f"{heads} heads do not divide the attention width {inner}")
        self.heads = heads
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(dim, inner)
        self.v_proj = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _split(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        qh, kh, vh = self._split(self.q_proj(q)), self._split(self.k_proj(k)), self._split(self.v_proj(v))
        attn = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(qh.shape[-1]), dim=-1)
        out = (attn @ vh).transpose(1, 2)
        return self.out_proj(out.reshape(out.shape[0], out.shape[1], -1))


class TwoWayBlock3D(nn.Module):
    """Token self-attention, token→image cross-attention, token MLP, image→token cross-attention."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, downsample: int, skip_first_pe: bool) -> None:
        super().__init__()
        self.self_attn = TokenAttention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = TokenAttention(dim, heads, downsample)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_dim, nn.ReLU)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = TokenAttention(dim, heads, downsample)
        self.skip_first_pe = skip_first_pe

    def forward(self, tok: Tensor, img: Tensor, tok_pe: Tensor, img_pe: Tensor) -> tuple[Tensor, Tensor]:
        if self.skip_first_pe:
            tok = self.self_attn(tok, tok, tok)
        else:
            q = tok + tok_pe
            tok = tok + self.self_attn(q, q, tok)
        tok = self.norm1(tok)
        tok = self.norm2(tok + self.cross_attn_token_to_image(tok + tok_pe, img + img_pe, img))
        tok = self.norm3(tok + self.mlp(tok))
        img = self.norm4(img + self.cross_attn_image_to_token(img + img_pe, tok + tok_pe, tok))
        return tok, img


class TwoWayTransformer3D(nn.Module):
    """Returns (tokens (B, T, dim), image tokens (B, N, dim)) for image (B, dim, *g) and tokens (B, T, dim)."""

    def __init__(self, depth: int = 2, dim: int = 384, heads: int = 8, mlp_dim: int = 2048, downsample: int = 2):
        super().__init__()
        self.layers = nn.ModuleList(TwoWayBlock3D(dim, heads, mlp_dim, downsample, i == 0) for i in range(depth))
        self.final_attn_token_to_image = TokenAttention(dim, heads, downsample)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image: Tensor, image_pe: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        img = image.flatten(2).transpose(1, 2)
        img_pe = image_pe.flatten(2).transpose(1, 2)
        tok = tokens
        for layer in self.layers:
            tok, img = layer(tok, img, tokens, img_pe)
        tok = self.norm_final_attn(tok + self.final_attn_token_to_image(tok + tokens, img + img_pe, img))
        return tok, img


class MLP(nn.Module):
    """``layers.0 .. layers.{n-1}`` Linear layers with ReLU between them."""

    def __init__(self, d_in: int, hidden: int, d_out: int, n: int) -> None:
        super().__init__()
        dims = [d_in] + [hidden] * (n - 1) + [d_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MaskDecoder3D(nn.Module):
    """Image embedding + prompts → (low-res mask logits (B, 1, 4g, 4g, 4g), IoU (B, 1), image tokens (B, g³, dim))."""

    def __init__(self, transformer_dim: int = 384, num_multimask_outputs: int = 3, iou_head_depth: int = 3,
                 iou_head_hidden_dim: int = 256) -> None:
        super().__init__()
        w = transformer_dim
        self.transformer = TwoWayTransformer3D(2, w, 8, 2048, 2)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, w)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, w)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose3d(w, w // 4, kernel_size=2, stride=2),
            LayerNorm3d(w // 4),
            nn.GELU(),
            nn.ConvTranspose3d(w // 4, w // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(w, w, w // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(w, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(self, image_embeddings: Tensor, image_pe: Tensor, sparse: Tensor, dense: Tensor,
                multimask_output: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """image_embeddings (B or 1, w, *g), image_pe (1, w, *g), sparse (B, N, w), dense (B, w, *g).

        Returns masks (B, 1 or 3, *4g) logits, iou (B, 1 or 3), image-side tokens (B, prod(g), w).
        """
        b = sparse.shape[0]
        out_tok = torch.cat([self.iou_token.weight, self.mask_tokens.weight], 0)
        tokens = torch.cat([out_tok.unsqueeze(0).expand(b, -1, -1), sparse], dim=1)
        src = image_embeddings if image_embeddings.shape[0] == b else image_embeddings.expand(b, -1, -1, -1, -1)
        src = src + dense
        pos = image_pe.expand(b, -1, -1, -1, -1)
        grid = src.shape[2:]
        hs, img = self.transformer(src, pos, tokens)
        up = self.output_upscaling(img.transpose(1, 2).reshape(b, -1, *grid))
        mask_tok = hs[:, 1:1 + self.num_mask_tokens]
        hyper = torch.stack([m(mask_tok[:, i]) for i, m in enumerate(self.output_hypernetworks_mlps)], 1)
        masks = (hyper @ up.flatten(2)).reshape(b, -1, *up.shape[2:])
        iou = self.iou_prediction_head(hs[:, 0])
        sl = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, sl], iou[:, sl], img
