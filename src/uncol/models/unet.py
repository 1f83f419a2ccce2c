"""The U-Net of the semi-supervised literature (SSL4MIS / BCP ``UNet``), for 2D and 3D.

Architecture (from HiLab-git/SSL4MIS ``networks/unet.py``, as used by BCP and the UnCoL code):
encoder ``in_conv`` + 4 x (max-pool 2, ConvBlock); a ConvBlock is conv3-BN-LeakyReLU-Dropout-conv3-BN-LeakyReLU;
decoder 4 x (1x1 conv to the skip width + 2x bilinear up-sampling with ``align_corners=True``,
concat skip, ConvBlock without dropout); head: a 3x3 conv to ``num_classes``. Defaults:
feature_chns (16, 32, 64, 128, 256), dropout (0.05, 0.1, 0.2, 0.3, 0.5).
Note: SSL4MIS sets ``'bilinear': False`` in its params dict, but its ``Decoder`` never passes it to
``UpBlock`` (whose default is ``bilinear=True``), so the network everyone trains and counts uses
bilinear up-sampling; ``bilinear=False`` (transposed convs, +130 k parameters) is an option here.
2D, in=1, out=4: 1,813,764 parameters (the published "1.81 M"), 2.95 GMACs per 256x256 slice.
The bottleneck is ``feature_chns[-1]`` channels at 1/16 of the input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from uncol.config import from_dict
from uncol.models import blocks
from uncol.models.base import MODELS


class ConvBlock(nn.Sequential):
    """conv3-BN-LeakyReLU-Dropout(p)-conv3-BN-LeakyReLU: ``(B, c_in, *S) -> (B, c_out, *S)``."""

    def __init__(self, spatial_dims: int, c_in: int, c_out: int, dropout: float) -> None:
        Conv = blocks.conv(spatial_dims)
        super().__init__(
            Conv(c_in, c_out, kernel_size=3, padding=1),
            blocks.norm("batchnorm", spatial_dims, c_out),
            nn.LeakyReLU(),
            nn.Dropout(dropout),
            Conv(c_out, c_out, kernel_size=3, padding=1),
            blocks.norm("batchnorm", spatial_dims, c_out),
            nn.LeakyReLU(),
        )


class UpBlock(nn.Module):
    """Up-sample ``x`` (transposed conv, or 1x1 conv + linear interpolation) to the skip's width, concat, ConvBlock."""

    def __init__(self, spatial_dims: int, c_in: int, c_skip: int, c_out: int, bilinear: bool = True) -> None:
        super().__init__()
        if bilinear:
            mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[spatial_dims]
            self.up: nn.Module = nn.Sequential(
                blocks.conv(spatial_dims)(c_in, c_skip, kernel_size=1),
                nn.Upsample(scale_factor=2, mode=mode, align_corners=True),
            )
        else:
            self.up = blocks.conv_transpose(spatial_dims)(c_in, c_skip, kernel_size=2, stride=2)
        self.conv = ConvBlock(spatial_dims, 2 * c_skip, c_out, dropout=0.0)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """``forward(x: (B, C, *S)) -> logits (B, K, *S)``; ``*S`` divisible by 16.

    Split for the student: ``encode(x) -> [x0..x4]`` (x4 the bottleneck, ``bottleneck_channels``
    at 1/16 size), ``decode(feats) -> (B, feature_chns[0], *S)``, ``head`` maps that to logits, and
    ``make_head()`` builds another head of the same kind.
    """

    reduction = 16

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        num_classes: int = 2,
        feature_chns: tuple[int, ...] = (16, 32, 64, 128, 256),
        dropout: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5),
        bilinear: bool = True,
    ) -> None:
        super().__init__()
        if len(feature_chns) != 5 or len(dropout) != 5:
            raise ValueError(
                f"UNet needs 5 feature widths and 5 dropout rates, got {feature_chns}, {dropout}"
            )
        self.spatial_dims, self.num_classes = spatial_dims, num_classes
        self.feature_chns = tuple(feature_chns)
        self.bottleneck_channels = feature_chns[-1]
        f = feature_chns
        self.in_conv = ConvBlock(spatial_dims, in_channels, f[0], dropout[0])
        Pool = blocks.max_pool(spatial_dims)
        self.downs = nn.ModuleList(
            nn.Sequential(Pool(2), ConvBlock(spatial_dims, f[i], f[i + 1], dropout[i + 1])) for i in range(4)
        )
        self.ups = nn.ModuleList(
            UpBlock(spatial_dims, f[i + 1], f[i], f[i], bilinear) for i in reversed(range(4))
        )
        self.head = self.make_head()

    def make_head(self) -> nn.Module:
        """A fresh output head: 3x3 conv ``feature_chns[0] -> num_classes``."""
        return blocks.conv(self.spatial_dims)(
            self.feature_chns[0], self.num_classes, kernel_size=3, padding=1
        )

    def encode(self, x: Tensor) -> list[Tensor]:
        blocks.check_divisible(tuple(x.shape[2:]), self.reduction, "UNet")
        feats = [self.in_conv(x)]
        for down in self.downs:
            feats.append(down(feats[-1]))
        return feats

    def decode(self, feats: list[Tensor]) -> Tensor:
        x = feats[-1]
        for up, skip in zip(self.ups, reversed(feats[:-1])):
            x = up(x, skip)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.decode(self.encode(x)))


@dataclass(frozen=True)
class UNetParams:
    """``model.params`` of ``unet`` (SSL4MIS/BCP defaults)."""

    feature_chns: tuple[int, ...] = (16, 32, 64, 128, 256)
    dropout: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5)
    bilinear: bool = True  # the effective SSL4MIS/BCP decoder (see the module docstring)


@MODELS.register("unet")
def build_unet(*, spatial_dims: int, in_channels: int, num_classes: int, params: dict) -> UNet:
    p = from_dict(UNetParams, params, prefix="model.params")
    return UNet(spatial_dims, in_channels, num_classes, p.feature_chns, p.dropout, p.bilinear)
