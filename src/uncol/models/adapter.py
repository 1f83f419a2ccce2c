"""Cross-attention knowledge adapter at the CNN bottleneck (UnCoL, SPEC §1).

Query = the bottleneck map flattened to tokens, key/value = a "knowledge" sequence; the attended
result goes through an output projection and is **added** to the bottleneck (residual), then
reshaped back to the map. As the authors' ``CrossAttentionFusion``: q/k/v/out are Linear layers
with bias, all of width ``dim`` (the bottleneck channels); the authors use one head (``heads=1``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class KnowledgeAdapter(nn.Module):
    """``forward(feat (B, dim, *G), knowledge (B, M, kv_dim)) -> (B, dim, *G)``; M is free."""

    def __init__(self, dim: int, kv_dim: int, heads: int = 1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"adapter width {dim} is not divisible by {heads} heads")
        self.dim, self.kv_dim, self.heads = dim, kv_dim, heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(kv_dim, dim)
        self.v_proj = nn.Linear(kv_dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, feat: Tensor, knowledge: Tensor) -> Tensor:
        b, c, *grid = feat.shape
        if (
            c != self.dim
            or knowledge.dim() != 3
            or knowledge.shape[-1] != self.kv_dim
            or knowledge.shape[0] != b
        ):
            raise ValueError(
                f"adapter expects features (B, {self.dim}, *G) and knowledge (B, M, {self.kv_dim}), "
                f"got {tuple(feat.shape)} and {tuple(knowledge.shape)}"
            )
        h, dh = self.heads, c // self.heads
        tokens = feat.flatten(2).transpose(1, 2)  # (B, N, C)
        q = self.q_proj(tokens).view(b, -1, h, dh).transpose(1, 2)
        k = self.k_proj(knowledge).view(b, -1, h, dh).transpose(1, 2)
        v = self.v_proj(knowledge).view(b, -1, h, dh).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, -1, c)
        out = self.out_proj(out).transpose(1, 2).reshape(b, c, *grid)
        return feat + out
