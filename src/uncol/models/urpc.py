"""URPC's pyramid U-Net (Luo et al., MICCAI 2021 / MedIA 2022; SSL4MIS ``UNet_URPC``), 2D and 3D.

The U-Net of :mod:`uncol.models.unet` (same encoder, decoder and main head, so the same weights
layout plus three heads) whose decoder also predicts at the three coarser decoder scales:

============  ==============================  ====================================  ==============
output        decoder feature (width, size)   perturbation in training (SSL4MIS)    head
============  ==============================  ====================================  ==============
main          up4 (f0, 1)                     none                                  3x3 conv
aux 1         up3 (f1, 1/2)                   feature noise ``x + x * u``,           3x3 conv
                                              ``u ~ U(-0.3, 0.3)`` per (C, *S),
                                              shared over the batch
aux 2         up2 (f2, 1/4)                   feature dropout: zero the locations   3x3 conv
                                              whose channel mean is
                                              ``>= max * U(0.7, 0.9)`` (per image)
aux 3         up1 (f3, 1/8)                   element-wise dropout ``p = 0.5``       3x3 conv
============  ==============================  ====================================  ==============

The perturbations act only on the auxiliary heads' inputs and only in ``train()`` mode; the main
path is the plain U-Net. Auxiliary logits are resized to the input size, by ``nearest``
interpolation as SSL4MIS's 2D ``Decoder_URPC`` (its 3D ``unet_3D_dv_semi`` uses trilinear
up-sampling instead: ``upsample="linear"``). SSL4MIS also builds a fourth, never-used head on the
bottleneck (``out_conv_dp4``); we leave it out. Randomness comes from torch's global RNG (SSL4MIS
draws the feature-dropout ratio from numpy).

``forward(x) -> main logits (B, K, *S)`` (inference and evaluation are unchanged);
``forward_pyramid(x) -> [main, aux1, aux2, aux3]``, each ``(B, K, *S)`` at the input size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from uncol.config import from_dict
from uncol.errors import ConfigError
from uncol.models import blocks
from uncol.models.base import MODELS
from uncol.models.unet import UNet


def feature_noise(x: Tensor, strength: float) -> Tensor:
    """``x + x * u`` with ``u ~ U(-strength, strength)`` of shape ``x.shape[1:]`` (shared over the batch)."""
    u = (torch.rand(x.shape[1:], device=x.device, dtype=x.dtype) * 2.0 - 1.0) * strength
    return x + x * u.unsqueeze(0)


def feature_dropout(x: Tensor, low: float, high: float) -> Tensor:
    """Zero the locations whose channel mean is at least ``gamma * max`` (per image), ``gamma ~ U(low, high)``.

    ``x`` ``(B, C, *S)`` -> same shape (SSL4MIS ``FeatureDropout``: one ``gamma`` for the whole batch).
    """
    attention = x.mean(dim=1, keepdim=True)  # (B, 1, *S)
    max_val = attention.flatten(1).max(dim=1).values  # (B,)
    gamma = low + (high - low) * float(torch.rand(()))
    threshold = (max_val * gamma).view(-1, *([1] * (x.dim() - 1)))
    return x * (attention < threshold).to(x.dtype)


class UNetURPC(UNet):
    """U-Net with URPC's perturbed auxiliary heads (see the module docstring)."""

    def __init__(
        self,
        *args: Any,
        aux_dropout: float = 0.5,
        feature_drop_range: tuple[float, float] = (0.7, 0.9),
        noise_strength: float = 0.3,
        upsample: str = "nearest",
        **kwargs: Any,
    ) -> None:
        """``*args, **kwargs``: :class:`~uncol.models.unet.UNet`'s (spatial_dims, in_channels, num_classes, ...)."""
        super().__init__(*args, **kwargs)
        spatial_dims, num_classes = self.spatial_dims, self.num_classes
        if upsample not in ("nearest", "linear"):
            raise ValueError(f"upsample must be 'nearest' or 'linear', got {upsample!r}")
        Conv = blocks.conv(spatial_dims)
        f = self.feature_chns
        # heads on the outputs of ups[0] (f3, 1/8), ups[1] (f2, 1/4), ups[2] (f1, 1/2)
        self.aux_heads = nn.ModuleList(Conv(f[3 - i], num_classes, kernel_size=3, padding=1) for i in range(3))
        self.aux_dropout = float(aux_dropout)
        self.feature_drop_range = (float(feature_drop_range[0]), float(feature_drop_range[1]))
        self.noise_strength = float(noise_strength)
        self.upsample = upsample

    def _perturb(self, level: int, x: Tensor) -> Tensor:
        """The training-time perturbation of decoder level ``level`` (0 = up1, coarsest)."""
        if not self.training:
            return x
        if level == 0:
            return F.dropout(x, p=self.aux_dropout, training=True)
        if level == 1:
            return feature_dropout(x, *self.feature_drop_range)
        return feature_noise(x, self.noise_strength)

    def _resize(self, z: Tensor, size: tuple[int, ...]) -> Tensor:
        if tuple(z.shape[2:]) == size:
            return z
        if self.upsample == "nearest":
            return F.interpolate(z, size=size, mode="nearest")
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[self.spatial_dims]
        return F.interpolate(z, size=size, mode=mode, align_corners=False)

    def forward_pyramid(self, x: Tensor) -> list[Tensor]:
        """``x (B, C, *S)`` -> ``[main, aux1 (1/2), aux2 (1/4), aux3 (1/8)]`` logits, each ``(B, K, *S)``."""
        size = tuple(x.shape[2:])
        feats = self.encode(x)
        y = feats[-1]
        aux: list[Tensor] = []
        for level, (up, skip) in enumerate(zip(self.ups, reversed(feats[:-1]))):
            y = up(y, skip)
            if level < 3:
                aux.append(self._resize(self.aux_heads[level](self._perturb(level, y)), size))
        return [self.head(y), *reversed(aux)]


@dataclass(frozen=True)
class UNetURPCParams:
    """``model.params`` of ``unet_urpc`` (U-Net defaults of SSL4MIS/BCP + URPC's perturbations)."""

    feature_chns: tuple[int, ...] = (16, 32, 64, 128, 256)
    dropout: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5)
    bilinear: bool = True
    aux_dropout: float = 0.5  # SSL4MIS Decoder_URPC: Dropout(x, p=0.5) before the 1/8 head
    feature_drop_range: tuple[float, float] = (0.7, 0.9)  # SSL4MIS FeatureDropout
    noise_strength: float = 0.3  # SSL4MIS FeatureNoise(uniform_range=0.3)
    upsample: str = "nearest"  # nearest (SSL4MIS 2D) | linear (SSL4MIS 3D deep supervision)


@MODELS.register("unet_urpc")
def build_unet_urpc(*, spatial_dims: int, in_channels: int, num_classes: int, params: dict) -> UNetURPC:
    p = from_dict(UNetURPCParams, params, prefix="model.params")
    if p.upsample not in ("nearest", "linear"):
        raise ConfigError(f"config key 'model.params.upsample' must be nearest or linear, got {p.upsample!r}")
    return UNetURPC(spatial_dims, in_channels, num_classes, p.feature_chns, p.dropout, p.bilinear,
                    aux_dropout=p.aux_dropout, feature_drop_range=p.feature_drop_range,
                    noise_strength=p.noise_strength, upsample=p.upsample)
