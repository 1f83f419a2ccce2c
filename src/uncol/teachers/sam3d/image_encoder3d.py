"""SAM-Med3D image encoder: a plain 3D ViT (ViTDet style) on a 16³-patch token grid.

Facts taken from the official ``segment_anything/modeling/image_encoder3D.py`` (parameter names
and shapes must match for a strict checkpoint load; the code below is our own):
- ``patch_embed.proj``: Conv3d(in_chans, embed_dim, kernel = stride = patch); tokens channels-last.
- ``pos_embed``: learned absolute embedding (1, g, g, g, embed_dim), g = img_size // patch.
- ``blocks.i``: pre-norm block (``norm1``, ``attn``, ``norm2``, ``mlp.lin1/lin2``, GELU), LayerNorm eps 1e-6.
  Blocks not in ``global_attn_indexes`` attend inside ``window_size``³ windows; the token grid is
  zero-padded (after ``norm1``) up to a multiple of the window, *without* masking the padding, as the
  official code does. With the ``vit_b_ori`` settings (grid 8³, window 14) every windowed block
  therefore attends over one padded 14³ window.
- ``attn``: fused ``qkv`` + ``proj``; decomposed relative positions ``rel_pos_d/h/w`` of shape
  (2·n − 1, head_dim), n = window size (windowed blocks) or the grid size (global blocks), combined
  the way the official code combines them (see :meth:`Attention3D._rel_bias`: not textbook MViTv2).
- ``neck``: Conv3d 1×1 (no bias) → LayerNorm3d → Conv3d 3×3×3 (no bias, pad 1) → LayerNorm3d.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LayerNorm3d(nn.Module):
    """LayerNorm over the channel axis of a (B, C, D, H, W) tensor (``weight``/``bias`` of shape (C,))."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        y = F.layer_norm(x.movedim(1, -1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.movedim(-1, 1)


class MLPBlock(nn.Module):
    """``lin1`` → activation → ``lin2``."""

    def __init__(self, dim: int, hidden: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)
        self.act = act()

    def forward(self, x: Tensor) -> Tensor:
        return self.lin2(self.act(self.lin1(x)))


class PatchEmbed3D(nn.Module):
    """(B, C, D, H, W) → (B, D/p, H/p, W/p, embed_dim) with one strided Conv3d (``proj``)."""

    def __init__(self, patch: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).permute(0, 2, 3, 4, 1)


def _relative_table(table: Tensor, size: int) -> Tensor:
    """(2·L−1, c) learned table → (size, size, c) with entry [i, j] = table at offset i − j.

    The table is linearly resized along its length when it was learned for another size.
    """
    length = 2 * size - 1
    if table.shape[0] != length:
        table = F.interpolate(table.t().unsqueeze(0), size=length, mode="linear").squeeze(0).t()
    pos = torch.arange(size, device=table.device)
    return table[pos[:, None] - pos[None, :] + size - 1]


class Attention3D(nn.Module):
    """Multi-head self-attention over a (B, D, H, W, C) token cube with decomposed relative positions."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool, rel_size: Sequence[int] | None) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = rel_size is not None
        if rel_size is not None:
            d, h, w = rel_size
            self.rel_pos_d = nn.Parameter(torch.zeros(2 * d - 1, self.head_dim))
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * h - 1, self.head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * w - 1, self.head_dim))

    def _rel_bias(self, q: Tensor, grid: tuple[int, int, int]) -> Tensor:
        """Additive attention bias (B·heads, N, N) from the query (B·heads, N, c) and the three tables.

        With r_a[b, i, k] = q[b, i] · R_a[i_a, k] (a ∈ {d, h, w}, i = (i_d, i_h, i_w) the query cell) the
        official code adds, to the logit of query i and key j = (j_d, j_h, j_w),
        ``r_d[i_d, i_h, i_w; j_w] + r_h[i_d, i_h, j_d; j_w] + r_w[i_d, i_h, j_h; j_w]`` — not the
        MViTv2 form r_d[i; j_d] + r_h[i; j_h] + r_w[i; j_w]: its 3D port kept 2D SAM's broadcasting
        indices on 5-D tensors. The released weights were trained with this term, so it is reproduced
        exactly (it needs a cubic grid, which SAM-Med3D always has).
        """
        d, h, w = grid
        if not d == h == w:
            raise ValueError(f"SAM-Med3D attention needs a cubic token grid, got {grid}")
        bh, n, c = q.shape
        qg = q.reshape(bh, d, h, w, c)
        r_d = torch.einsum("bdhwc,dkc->bdhwk", qg, _relative_table(self.rel_pos_d, d))
        r_h = torch.einsum("bdhwc,hkc->bdhwk", qg, _relative_table(self.rel_pos_h, h))
        r_w = torch.einsum("bdhwc,wkc->bdhwk", qg, _relative_table(self.rel_pos_w, w))
        # target layout (b, i_d, i_h, i_w, j_d, j_h, j_w); the last axis of every r_a runs over j_w
        bias = r_d[:, :, :, :, None, None, :] + r_h[:, :, :, None, :, None, :] + r_w[:, :, :, None, None, :, :]
        return bias.reshape(bh, n, n)

    def forward(self, x: Tensor) -> Tensor:
        b, d, h, w, dim = x.shape
        n = d * h * w
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = (t.reshape(b * self.heads, n, self.head_dim) for t in qkv.unbind(0))
        bias = self._rel_bias(q, (d, h, w)) if self.use_rel_pos else None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # scale = head_dim ** -0.5
        out = out.reshape(b, self.heads, d, h, w, self.head_dim).permute(0, 2, 3, 4, 1, 5)
        return self.proj(out.reshape(b, d, h, w, dim))


def _to_windows(x: Tensor, ws: int) -> tuple[Tensor, tuple[int, int, int]]:
    """(B, D, H, W, C) → (B·nW, ws, ws, ws, C), zero-padding each spatial axis up to a multiple of ws."""
    b, d, h, w, c = x.shape
    pads = [(-s) % ws for s in (d, h, w)]
    if any(pads):
        x = F.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
    dp, hp, wp = d + pads[0], h + pads[1], w + pads[2]
    x = x.reshape(b, dp // ws, ws, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 5, 2, 4, 6, 7)
    return x.reshape(-1, ws, ws, ws, c), (dp, hp, wp)


def _from_windows(win: Tensor, ws: int, padded: tuple[int, int, int], size: tuple[int, int, int]) -> Tensor:
    """Inverse of :func:`_to_windows`, cropping the padding away."""
    dp, hp, wp = padded
    nd, nh, nw = dp // ws, hp // ws, wp // ws
    b = win.shape[0] // (nd * nh * nw)
    x = win.reshape(b, nd, nh, nw, ws, ws, ws, -1).permute(0, 1, 4, 2, 5, 3, 6, 7)
    x = x.reshape(b, dp, hp, wp, -1)
    d, h, w = size
    return x[:, :d, :h, :w].contiguous()


class Block3D(nn.Module):
    """Pre-norm transformer block; ``window`` > 0 → attention inside (zero-padded) windows."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, qkv_bias: bool, use_rel_pos: bool,
                 window: int, grid: tuple[int, int, int]) -> None:
        super().__init__()
        self.window = window
        rel = (window, window, window) if window > 0 else grid
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention3D(dim, heads, qkv_bias, rel if use_rel_pos else None)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm1(x)
        if self.window > 0:
            size = (y.shape[1], y.shape[2], y.shape[3])
            win, padded = _to_windows(y, self.window)
            y = _from_windows(self.attn(win), self.window, padded, size)
        else:
            y = self.attn(y)
        x = x + y
        return x + self.mlp(self.norm2(x))


class ImageEncoderViT3D(nn.Module):
    """(B, in_chans, S, S, S) → image embedding (B, out_chans, g, g, g), g = S // patch.

    :meth:`forward_with_blocks` also returns the requested block outputs as (B, embed_dim, g, g, g).
    """

    def __init__(self, img_size: int = 128, patch_size: int = 16, in_chans: int = 1, embed_dim: int = 768,
                 depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0, out_chans: int = 384,
                 qkv_bias: bool = True, use_rel_pos: bool = True, window_size: int = 14,
                 global_attn_indexes: Sequence[int] = (2, 5, 8, 11)) -> None:
        super().__init__()
        self.img_size = img_size
        g = img_size // patch_size
        self.grid = (g, g, g)
        self.patch_embed = PatchEmbed3D(patch_size, in_chans, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, g, g, g, embed_dim))
        self.blocks = nn.ModuleList(
            Block3D(embed_dim, num_heads, mlp_ratio, qkv_bias, use_rel_pos,
                    0 if i in global_attn_indexes else window_size, self.grid)
            for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv3d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm3d(out_chans),
            nn.Conv3d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm3d(out_chans),
        )

    def forward_with_blocks(self, x: Tensor, keep: Sequence[int] = ()) -> tuple[Tensor, list[Tensor]]:
        """Returns (embedding (B, out_chans, g, g, g), [block ``i`` output (B, embed_dim, g, g, g) for i in keep])."""
        t = self.patch_embed(x) + self.pos_embed
        kept: dict[int, Tensor] = {}
        for i, blk in enumerate(self.blocks):
            t = blk(t)
            if i in keep:
                kept[i] = t.permute(0, 4, 1, 2, 3)
        return self.neck(t.permute(0, 4, 1, 2, 3)), [kept[i] for i in keep]

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_blocks(x)[0]
