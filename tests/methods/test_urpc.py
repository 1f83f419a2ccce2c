"""URPC: the pyramid U-Net (shapes, perturbations, registry) and the method's rectified consistency."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import uncol.models  # noqa: F401  (registers unet_urpc)
from uncol.config import Config, ModelConfig, from_dict
from uncol.data.sampler import Batch
from uncol.errors import ConfigError
from uncol.eval.efficiency import count_params
from uncol.methods.base import MethodContext
from uncol.methods.urpc import URPC, URPCParams
from uncol.models import build_model
from uncol.models.unet import UNet
from uncol.models.urpc import UNetURPC, feature_dropout, feature_noise

CHNS = (4, 8, 8, 16, 16)


@pytest.mark.parametrize("dims,shape", [(2, (2, 1, 32, 32)), (3, (2, 1, 16, 32, 16))])
def test_pyramid_shapes_and_main_output(dims: int, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    m = build_model(ModelConfig(name="unet_urpc", params={"feature_chns": list(CHNS)}), dims, 3).eval()
    x = torch.randn(shape)
    outs = m.forward_pyramid(x)
    assert len(outs) == 4 and all(o.shape == (2, 3, *shape[2:]) for o in outs)
    torch.testing.assert_close(outs[0], m(x))
    # the U-Net plus three 3^d-kernel heads on the decoder widths f3, f2, f1
    extra = sum(3**dims * c * 3 + 3 for c in (CHNS[3], CHNS[2], CHNS[1]))
    assert count_params(m) - count_params(UNet(dims, 1, 3, CHNS)) == extra


def test_perturbations_touch_only_the_auxiliary_heads_in_training() -> None:
    torch.manual_seed(0)
    m = UNetURPC(2, 1, 2, CHNS, dropout=(0.0,) * 5).train()
    x = torch.randn(2, 1, 32, 32)
    a, b = m.forward_pyramid(x), m.forward_pyramid(x)
    torch.testing.assert_close(a[0], b[0])  # the main path is deterministic here (no encoder dropout)
    assert all(not torch.allclose(p, q) for p, q in zip(a[1:], b[1:]))
    m.eval()
    a, b = m.forward_pyramid(x), m.forward_pyramid(x)
    assert all(torch.equal(p, q) for p, q in zip(a, b))


def test_every_parameter_gets_a_gradient_through_the_pyramid() -> None:
    torch.manual_seed(0)
    m = UNetURPC(3, 1, 2, CHNS).train()
    sum(z.square().mean() for z in m.forward_pyramid(torch.randn(2, 1, 16, 16, 16))).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_feature_dropout_and_noise() -> None:
    # channel means 0, 0.5 and 1 at three locations: max 1, threshold in [0.7, 0.9] -> only the last is dropped
    x = torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3).repeat(2, 4, 1, 1)
    torch.testing.assert_close(feature_dropout(x, 0.7, 0.9), x * torch.tensor([1.0, 1.0, 0.0]))
    torch.manual_seed(0)
    y = torch.randn(3, 4, 5, 5)
    n = feature_noise(y, 0.3)
    ratio = (n - y) / y
    assert ratio.abs().max() <= 0.3 + 1e-6
    torch.testing.assert_close(ratio[0], ratio[2])  # one noise map for the whole batch


class _Pyramid(nn.Module):
    """Fixed per-scale logits ``(S, K, 1, W)``, the same for every image."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_pyramid(x)[0]

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [z.expand(x.shape[0], -1, -1, -1) for z in self.logits.unbind(0)]


def _method(model: nn.Module, **params) -> URPC:
    cfg = from_dict(Config, {"model": {"name": "unet_urpc"}, "method": {"name": "urpc", "params": params},
                             "train": {"iterations": 100}})
    return URPC(MethodContext(cfg=cfg, model=model, teacher=None, num_classes=2, spatial_dims=2),
                from_dict(URPCParams, params))


def test_rectified_consistency_uses_exp_of_minus_kl_to_the_mean() -> None:
    # two scales, two pixels: at pixel A the scales say (0.5, 0.5) and (0.9, 0.1); at pixel B both say (0.6, 0.4)
    probs = torch.tensor([[[0.5, 0.6], [0.5, 0.4]], [[0.9, 0.6], [0.1, 0.4]]])  # (S, K, W)
    m = _method(_Pyramid(probs.log().unsqueeze(2)))
    b = Batch(labeled={"image": torch.zeros(1, 1, 1, 2), "label": torch.zeros(1, 1, 2, dtype=torch.long)},
              unlabeled={"image": torch.zeros(1, 1, 1, 2)})
    out = m.train_step(b, 100, 100)
    mean_a = (0.7, 0.3)
    terms = []
    for p_a in ((0.5, 0.5), (0.9, 0.1)):
        kl = sum(pb * math.log(pb / ps) for pb, ps in zip(mean_a, p_a))  # KL(p_bar || p_s) at A; 0 at B
        w = math.exp(-kl)  # the rectification weight at A; 1 at B
        sq = sum((pb - ps) ** 2 for pb, ps in zip(mean_a, p_a))  # at A; 0 at B
        terms.append((w * sq / 4) / ((w + 1) / 2) + kl / 2)  # means over (K, 2 pixels) and (2 pixels)
    assert out.parts["consistency"] == pytest.approx(sum(terms) / 2, rel=1e-5)
    assert out.parts["weight"] == pytest.approx(0.1)


def test_supervision_on_every_scale() -> None:
    from uncol.losses.segmentation import ce_loss, dice_loss

    torch.manual_seed(0)
    logits = torch.randn(4, 2, 1, 5)  # (S, K, 1, W)
    m = _method(_Pyramid(logits))
    y = torch.randint(0, 2, (1, 1, 5))
    b = Batch(labeled={"image": torch.zeros(1, 1, 1, 5), "label": y}, unlabeled={"image": torch.zeros(1, 1, 1, 5)})
    expected = sum(0.5 * (ce_loss(z[None], y) + dice_loss(z[None], y)) for z in logits.unbind(0)) / 4
    assert m.train_step(b, 0, 100).parts["sup"] == pytest.approx(expected.item(), rel=1e-6)


def test_needs_a_pyramid_model() -> None:
    with pytest.raises(ConfigError, match="unet_urpc"):
        _method(nn.Conv2d(1, 2, 1))
