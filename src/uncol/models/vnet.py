"""The V-Net of UA-MT / MC-Net / BCP (``networks/vnet.py`` of those repositories), for 3D and 2D.

Encoder: stages of 1, 2, 3, 3, 3 conv3-norm-ReLU layers at widths n, 2n, 4n, 8n, 16n (n = 16),
joined by stride-2 k2 convs; decoder: stride-2 k2 transposed convs, **added** to the skip (no
concat), stages of 3, 3, 2 layers; head: one conv3-norm-ReLU stage (``block_nine``), channel
dropout (p 0.5) when ``has_dropout``, 1x1 conv. ``has_dropout`` also drops channels of the
bottleneck. BCP/MC-Net use ``normalization="batchnorm", has_dropout=True`` (our defaults).
3D, in=1, out=2: 9,443,858 parameters (the published "9.44 M"); at 128^3: 83.8 GMACs exact
(conv MACs; 97.9 G with thop's transposed-conv convention, the figure the papers quote).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from uncol.config import from_dict
from uncol.models import blocks
from uncol.models.base import MODELS


def conv_stage(spatial_dims: int, n_layers: int, c_in: int, c_out: int, normalization: str) -> nn.Sequential:
    """``n_layers`` x (conv3-norm-ReLU); the first maps ``c_in -> c_out``."""
    layers: list[nn.Module] = []
    for i in range(n_layers):
        layers += [
            blocks.conv(spatial_dims)(c_in if i == 0 else c_out, c_out, kernel_size=3, padding=1),
            blocks.norm(normalization, spatial_dims, c_out),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


def resample(spatial_dims: int, c_in: int, c_out: int, normalization: str, up: bool) -> nn.Sequential:
    """Stride-2 kernel-2 (transposed) conv, norm, ReLU."""
    Conv = blocks.conv_transpose(spatial_dims) if up else blocks.conv(spatial_dims)
    return nn.Sequential(
        Conv(c_in, c_out, kernel_size=2, stride=2),
        blocks.norm(normalization, spatial_dims, c_out),
        nn.ReLU(inplace=True),
    )


class VNet(nn.Module):
    """``forward(x: (B, C, *S)) -> logits (B, K, *S)``; ``*S`` divisible by 16.

    Same split as :class:`~uncol.models.unet.UNet`: ``encode``, ``decode`` (to ``(B, n, *S)``,
    before ``block_nine``), ``head`` (block_nine, dropout, 1x1 conv), ``make_head()``.
    """

    reduction = 16

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        num_classes: int = 2,
        n_filters: int = 16,
        normalization: str = "batchnorm",
        has_dropout: bool = True,
    ) -> None:
        super().__init__()
        d, n, nm = spatial_dims, n_filters, normalization
        self.spatial_dims, self.num_classes, self.n_filters = d, num_classes, n
        self.normalization, self.has_dropout = nm, has_dropout
        self.bottleneck_channels = 16 * n
        widths, depths = [n, 2 * n, 4 * n, 8 * n, 16 * n], [1, 2, 3, 3, 3]
        self.enc = nn.ModuleList(
            conv_stage(d, depths[i], in_channels if i == 0 else widths[i], widths[i], nm) for i in range(5)
        )
        self.down = nn.ModuleList(resample(d, widths[i], widths[i + 1], nm, up=False) for i in range(4))
        self.up = nn.ModuleList(
            resample(d, widths[i + 1], widths[i], nm, up=True) for i in reversed(range(4))
        )
        self.dec = nn.ModuleList(
            conv_stage(d, k, widths[i], widths[i], nm) for i, k in ((3, 3), (2, 3), (1, 2))
        )
        self.dropout = blocks.channel_dropout(d)(p=0.5) if has_dropout else nn.Identity()
        self.head = self.make_head()

    def make_head(self) -> nn.Module:
        """A fresh head: conv3-norm-ReLU (``block_nine``), channel dropout if ``has_dropout``, 1x1 conv."""
        n, d = self.n_filters, self.spatial_dims
        drop = blocks.channel_dropout(d)(p=0.5) if self.has_dropout else nn.Identity()
        return nn.Sequential(
            conv_stage(d, 1, n, n, self.normalization),
            drop,
            blocks.conv(d)(n, self.num_classes, kernel_size=1),
        )

    def encode(self, x: Tensor) -> list[Tensor]:
        blocks.check_divisible(tuple(x.shape[2:]), self.reduction, "VNet")
        feats = [self.enc[0](x)]
        for down, stage in zip(self.down, self.enc[1:]):
            feats.append(stage(down(feats[-1])))
        feats[-1] = self.dropout(feats[-1])
        return feats

    def decode(self, feats: list[Tensor]) -> Tensor:
        x = feats[-1]
        skips = list(reversed(feats[:-1]))
        for i, up in enumerate(self.up):
            x = up(x) + skips[i]
            if i < len(self.dec):
                x = self.dec[i](x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.decode(self.encode(x)))


@dataclass(frozen=True)
class VNetParams:
    """``model.params`` of ``vnet`` (BCP/MC-Net defaults)."""

    n_filters: int = 16
    normalization: str = "batchnorm"  # batchnorm | instancenorm | groupnorm | none
    has_dropout: bool = True


@MODELS.register("vnet")
def build_vnet(*, spatial_dims: int, in_channels: int, num_classes: int, params: dict) -> VNet:
    p = from_dict(VNetParams, params, prefix="model.params")
    if p.normalization not in blocks.NORMS:
        from uncol.errors import ConfigError

        raise ConfigError(
            f"config key 'model.params.normalization' must be one of {', '.join(blocks.NORMS)}, got {p.normalization!r}"
        )
    return VNet(spatial_dims, in_channels, num_classes, p.n_filters, p.normalization, p.has_dropout)
