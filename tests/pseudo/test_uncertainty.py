"""Known answers for the uncertainty measures."""
from __future__ import annotations

import math

import pytest
import torch

from uncol.pseudo.uncertainty import (
    energy_score,
    entropy,
    hard_label,
    kl_divergence,
    max_probability,
    mc_mutual_information,
    mc_variance,
)


def test_entropy_known_values() -> None:
    p = torch.tensor([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0]]).T.reshape(1, 3, 3)
    u = entropy(p)
    assert u.shape == (1, 3)
    torch.testing.assert_close(u, torch.tensor([[0.0, math.log(3), math.log(2)]]))
    torch.testing.assert_close(entropy(p, normalized=True), torch.tensor([[0.0, 1.0, math.log(2) / math.log(3)]]))
    assert entropy(p, keepdim=True).shape == (1, 1, 3)
    assert torch.isfinite(entropy(p)).all()


def test_kl_max_prob_energy() -> None:
    p = torch.tensor([0.5, 0.5]).view(1, 2, 1)
    q = torch.tensor([0.25, 0.75]).view(1, 2, 1)
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    torch.testing.assert_close(kl_divergence(p, q), torch.tensor([[expected]]))
    torch.testing.assert_close(kl_divergence(p, p), torch.zeros(1, 1))
    torch.testing.assert_close(max_probability(q), torch.tensor([[0.75]]))
    z = torch.zeros(1, 3, 1)
    torch.testing.assert_close(energy_score(z), torch.full((1, 1), -math.log(3)))


def test_mc_measures() -> None:
    # two confident samples that disagree: MI = H(mean) - mean H = ln 2 - 0
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(2, 1, 2, 1)
    torch.testing.assert_close(mc_mutual_information(s), torch.tensor([[math.log(2)]]))
    torch.testing.assert_close(mc_variance(s), torch.tensor([[0.25]]))
    same = torch.tensor([[0.3, 0.7], [0.3, 0.7]]).view(2, 1, 2, 1)
    torch.testing.assert_close(mc_mutual_information(same), torch.zeros(1, 1))
    torch.testing.assert_close(mc_variance(same), torch.zeros(1, 1))


@pytest.mark.parametrize("shape,dim", [((2, 2, 17, 19), 1), ((3, 4, 5, 6, 7), 1), ((3, 9, 11), 0), ((2, 5), 1)])
def test_hard_label_is_argmax_first_maximum_on_ties(shape: tuple[int, ...], dim: int) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.softmax(torch.randn(shape, generator=g), dim=dim)
    ties = torch.randint(0, 3, shape, generator=g).float()  # many exact ties between classes
    for t in (x, ties, torch.full(shape, 0.5)):
        got = hard_label(t, dim=dim)
        assert got.dtype == torch.int64 and torch.equal(got, t.argmax(dim=dim))
    assert torch.equal(hard_label(torch.full(shape, 0.5), dim=dim), torch.zeros_like(hard_label(x, dim=dim)))
