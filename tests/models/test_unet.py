"""U-Net: the published size, shapes in 2D and 3D, the encoder/decoder split."""

from __future__ import annotations

import pytest
import torch

from uncol.config import ModelConfig
from uncol.errors import ConfigError
from uncol.eval.efficiency import count_macs, count_params
from uncol.models import build_model
from uncol.models.unet import UNet


def test_param_count_matches_ssl4mis() -> None:
    # SSL4MIS/BCP UNet(in_chns=1, class_num=4): 1,813,764 parameters ("1.81 M"); tolerance 0.5 %
    m = build_model(ModelConfig(name="unet"), 2, 4)
    assert count_params(m) == 1_813_764
    assert abs(count_params(m) / 1.81e6 - 1) < 0.005


def test_transposed_variant_is_larger_by_the_deconvs() -> None:
    bil = UNet(2, 1, 4, bilinear=True)
    tr = UNet(2, 1, 4, bilinear=False)
    # 1x1 convs (c_in*c_skip + c_skip) replaced by k2 deconvs (4*c_in*c_skip + c_skip)
    diff = sum(3 * a * b for a, b in ((256, 128), (128, 64), (64, 32), (32, 16)))
    assert count_params(tr) - count_params(bil) == diff


def test_macs_at_256() -> None:
    # published 3.01 GMACs (thop); exact conv MACs 2.95 G -> within 3 %
    macs = count_macs(build_model(ModelConfig(name="unet"), 2, 4), (1, 1, 256, 256))
    assert macs["macs_paper"] == macs["macs_exact"] == 2_949_644_288
    assert abs(macs["macs_paper"] / 3.01e9 - 1) < 0.03


@pytest.mark.parametrize("dims,shape", [(2, (2, 1, 32, 48)), (3, (2, 2, 16, 32, 16))])
def test_shapes_and_split(dims: int, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    m = UNet(dims, shape[1], 3).eval()
    x = torch.randn(shape)
    feats = m.encode(x)
    assert [f.shape[1] for f in feats] == [16, 32, 64, 128, 256]
    assert tuple(feats[-1].shape[2:]) == tuple(s // 16 for s in shape[2:])
    y = m(x)
    assert y.shape == (shape[0], 3, *shape[2:])
    assert torch.allclose(y, m.head(m.decode(m.encode(x))))


def test_indivisible_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="divisible by 16"):
        UNet(2, 1, 2)(torch.zeros(1, 1, 40, 32))


def test_unknown_param_names_the_key() -> None:
    with pytest.raises(ConfigError, match="model.params.featur_chns"):
        build_model(ModelConfig(name="unet", params={"featur_chns": [8, 16, 32, 64, 128]}), 2, 2)
