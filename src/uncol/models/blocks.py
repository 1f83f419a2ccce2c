"""Layer factories indexed by ``spatial_dims`` (one network code path for 2D and 3D, as MONAI does)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_IN = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_CH_DROPOUT = {1: nn.Dropout1d, 2: nn.Dropout2d, 3: nn.Dropout3d}


def _check(spatial_dims: int) -> int:
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}")
    return spatial_dims


def conv(spatial_dims: int) -> type[nn.Module]:
    """``nn.Conv{d}d``."""
    return _CONV[_check(spatial_dims)]


def conv_transpose(spatial_dims: int) -> type[nn.Module]:
    """``nn.ConvTranspose{d}d``."""
    return _CONV_T[_check(spatial_dims)]


def max_pool(spatial_dims: int) -> type[nn.Module]:
    """``nn.MaxPool{d}d``."""
    return _POOL[_check(spatial_dims)]


def channel_dropout(spatial_dims: int) -> type[nn.Module]:
    """``nn.Dropout{d}d`` (drops whole channels, as the V-Net of UA-MT)."""
    return _CH_DROPOUT[_check(spatial_dims)]


NORMS: dict[str, Callable[[int, int], nn.Module]] = {
    "batchnorm": lambda d, c: _BN[_check(d)](c),
    "instancenorm": lambda d, c: _IN[_check(d)](c),
    "groupnorm": lambda d, c: nn.GroupNorm(num_groups=16, num_channels=c),
    "none": lambda d, c: nn.Identity(),
}


def norm(name: str, spatial_dims: int, channels: int) -> nn.Module:
    """A normalisation layer by name: ``batchnorm | instancenorm | groupnorm | none``."""
    if name not in NORMS:
        raise ValueError(f"normalization must be one of {', '.join(NORMS)}, got {name!r}")
    return NORMS[name](spatial_dims, channels)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a ``(B, C, *S)`` map (SAM's ``LayerNorm2d``, any ``*S``)."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.weight.view(shape) + self.bias.view(shape)


def check_divisible(spatial: tuple[int, ...], factor: int, what: str) -> None:
    """Raise a ValueError unless every spatial size is divisible by ``factor``."""
    if any(s % factor for s in spatial):
        raise ValueError(
            f"{what} needs every spatial size divisible by {factor}, got {tuple(spatial)}; "
            f"resize/pad the input (data.size) or use sliding-window inference with such a patch"
        )
