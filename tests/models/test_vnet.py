"""V-Net: the published size and MACs, shapes in 3D and 2D, dropout switch."""

from __future__ import annotations

import pytest
import torch

from uncol.config import ModelConfig
from uncol.errors import ConfigError
from uncol.eval.efficiency import count_macs, count_params
from uncol.models import build_model
from uncol.models.vnet import VNet


def test_param_count_matches_published() -> None:
    # UA-MT/MC-Net VNet(n_channels=1, n_classes=2, batchnorm): "9.44 M"; 9,443,266 conv weights and
    # biases + 5,600 BatchNorm affine parameters; tolerance 0.5 %
    m = build_model(ModelConfig(name="vnet"), 3, 2)
    n = count_params(m)
    assert n == 9_448_866
    bn = sum(
        p.numel() for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm3d) for p in mod.parameters()
    )
    assert n - bn == 9_443_266
    assert abs(n / 9.44e6 - 1) < 0.005


def test_macs_at_128_cubed_match_published_thop_figure() -> None:
    macs = count_macs(build_model(ModelConfig(name="vnet"), 3, 2), (1, 1, 128, 128, 128))
    assert abs(macs["macs_paper"] / 97.9e9 - 1) < 0.001  # thop convention: 97.91 G
    assert macs["macs_exact"] == 83_818_971_136


@pytest.mark.parametrize("dims,shape", [(3, (2, 1, 32, 16, 16)), (2, (2, 3, 32, 48))])
def test_shapes(dims: int, shape: tuple[int, ...]) -> None:
    m = VNet(dims, shape[1], 4).eval()
    x = torch.randn(shape)
    feats = m.encode(x)
    assert [f.shape[1] for f in feats] == [16, 32, 64, 128, 256]
    assert tuple(feats[-1].shape[2:]) == tuple(s // 16 for s in shape[2:])
    assert m(x).shape == (shape[0], 4, *shape[2:])


def test_dropout_switch() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 1, 16, 16, 16)
    m = VNet(3, 1, 2, has_dropout=True).train()
    assert not torch.equal(m(x), m(x))  # stochastic in train mode (MC-dropout)
    m.eval()
    assert torch.equal(m(x), m(x))
    assert not any(isinstance(mod, torch.nn.Dropout3d) for mod in VNet(3, 1, 2, has_dropout=False).modules())


def test_bad_normalization_names_the_key() -> None:
    with pytest.raises(ConfigError, match="model.params.normalization"):
        build_model(ModelConfig(name="vnet", params={"normalization": "layernorm"}), 3, 2)
