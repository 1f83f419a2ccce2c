"""Every registered model: a tiny forward + backward in 2D and 3D; build errors."""

from __future__ import annotations

import pytest
import torch

import uncol.models
from uncol.config import ModelConfig
from uncol.errors import ConfigError
from uncol.models import MODELS, build_model

SHAPES = {2: (2, 1, 32, 48), 3: (2, 1, 16, 16, 32)}


def test_registry_is_filled_on_import() -> None:
    assert {"unet", "vnet", "uncol_student"} <= set(uncol.models.MODELS.names())


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", MODELS.names())
def test_forward_backward(name: str, dims: int) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name), dims, 3).train()
    x = torch.randn(SHAPES[dims])
    y = model(x)
    assert y.shape == (2, 3, *SHAPES[dims][2:])
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    # teacher_kv_proj (training-only knowledge input) and URPC's aux heads (used by forward_pyramid) see no
    # gradient through a plain forward
    grads = [p.grad for n, p in model.named_parameters() if "teacher_kv_proj" not in n and "aux_heads" not in n]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_unknown_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="model.name.*unet"):
        build_model(ModelConfig(name="unnet"), 2, 2)


def test_in_channels_is_honoured() -> None:
    m = build_model(ModelConfig(name="uncol_student", in_channels=3), 2, 2).eval()
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 2, 32, 32)
