"""The model registry and :func:`build_model` (the one place a model name becomes code).

A builder is registered with ``@MODELS.register(name)`` and called as
``builder(spatial_dims=..., in_channels=..., num_classes=..., params=dict)``; it validates
``params`` with :func:`uncol.config.from_dict` into its own dataclass (prefix ``model.params``),
so an unknown key is a :class:`~uncol.errors.ConfigError` naming ``model.params.<key>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from torch import nn

from uncol.config import ModelConfig
from uncol.errors import ConfigError
from uncol.registry import Registry


class ModelBuilder(Protocol):
    def __call__(
        self, *, spatial_dims: int, in_channels: int, num_classes: int, params: dict
    ) -> nn.Module: ...


MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def build_model(cfg: ModelConfig, spatial_dims: int, num_classes: int) -> nn.Module:
    """Build ``cfg.name`` for ``spatial_dims`` (2 or 3) with ``num_classes`` outputs (background included).

    Every model maps ``(B, cfg.in_channels, *S) -> logits (B, num_classes, *S)``; ``*S`` must be
    divisible by 16 (four 2x down-samplings).
    """
    if cfg.name not in MODELS:
        known = ", ".join(MODELS.names())
        raise ConfigError(f"config key 'model.name': unknown model {cfg.name!r}; choose one of: {known}")
    if spatial_dims not in (2, 3):
        raise ConfigError(f"config key 'data.spatial_dims' must be 2 or 3 for a model, got {spatial_dims}")
    if num_classes < 2:
        raise ConfigError(
            f"a model needs at least 2 classes (background included), got {num_classes}; check dataset.json labels"
        )
    builder = MODELS.get(cfg.name)
    return builder(
        spatial_dims=spatial_dims,
        in_channels=cfg.in_channels,
        num_classes=num_classes,
        params=dict(cfg.params),
    )
