"""UAPL fusion on hand-made probability maps: the four cases, the ablation modes, largest component."""
from __future__ import annotations

import math

import pytest
import torch

from uncol.pseudo.uapl import fuse, largest_component
from uncol.pseudo.uncertainty import entropy
from uncol.registry import UnknownNameError
from uncol.schedules import uapl_threshold


def _maps() -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 3, 4) maps, 3 classes, 4 pixels: [both confident, only G, only S, neither]."""
    conf_a = [0.9, 0.05, 0.05]  # H ~ 0.394
    conf_b = [0.7, 0.2, 0.1]  # H ~ 0.802
    conf_c = [0.1, 0.85, 0.05]
    unsure = [0.4, 0.35, 0.25]  # H ~ 1.081
    p_g = torch.tensor([conf_a, conf_c, unsure, unsure]).T.unsqueeze(0)
    p_s = torch.tensor([conf_b, unsure, conf_c, [0.34, 0.33, 0.33]]).T.unsqueeze(0)
    return p_g, p_s


TAU = 1.0  # in nats; ln 3 = 1.0986, so the "unsure" maps are above it and the confident ones below


def test_uapl_four_cases() -> None:
    p_g, p_s = _maps()
    u_g, u_s = entropy(p_g), entropy(p_s)
    assert (u_g[0] < TAU).tolist() == [True, True, False, False]
    assert (u_s[0] < TAU).tolist() == [True, False, True, False]
    out = fuse(p_g, p_s, TAU, mode="uapl")
    assert out.label.dtype == torch.int64 and out.mask.dtype == torch.bool
    assert out.label.shape == (1, 4) and out.probs.shape == (1, 3, 4)
    # both confident: exact exp(-U) weights
    e_g, e_s = math.exp(-u_g[0, 0].item()), math.exp(-u_s[0, 0].item())
    w_g, w_s = e_g / (e_g + e_s), e_s / (e_g + e_s)
    torch.testing.assert_close(out.probs[0, :, 0], w_g * p_g[0, :, 0] + w_s * p_s[0, :, 0])
    assert w_g > w_s  # the lower entropy weighs more
    # only G / only S: that teacher's probabilities
    torch.testing.assert_close(out.probs[0, :, 1], p_g[0, :, 1])
    torch.testing.assert_close(out.probs[0, :, 2], p_s[0, :, 2])
    assert out.label[0].tolist()[:3] == [0, 1, 1]
    # neither: masked out
    assert out.mask[0].tolist() == [True, True, True, False]


def test_uapl_known_weight_numbers() -> None:
    # two-class maps with entropies ln 2 (uniform) and 0 (one-hot): w = 1/(1+2) and 2/3
    p_g = torch.tensor([[0.5], [0.5]]).unsqueeze(0)  # (1, 2, 1), U = ln 2
    p_s = torch.tensor([[0.0], [1.0]]).unsqueeze(0)  # U = 0
    out = fuse(p_g, p_s, tau=10.0)  # both "confident"
    torch.testing.assert_close(out.probs[0, :, 0], torch.tensor([1 / 3 * 0.5, 1 / 3 * 0.5 + 2 / 3]))
    assert out.label.item() == 1 and out.mask.item()


def test_threshold_is_strict_and_accepts_tensor() -> None:
    p = torch.tensor([[0.5], [0.5]]).unsqueeze(0)
    assert not fuse(p, p, tau=math.log(2), mode="uapl").mask.item()  # U == tau is not confident
    p_g, p_s = _maps()
    per_image = fuse(p_g, p_s, torch.tensor([TAU]), mode="uapl")
    assert per_image.mask[0].tolist() == [True, True, True, False]


def test_modes_s_only_and_avg() -> None:
    p_g, p_s = _maps()
    s = fuse(None, p_s, TAU, mode="s_only")
    torch.testing.assert_close(s.probs, p_s)
    assert s.mask[0].tolist() == [True, False, True, False]
    assert s.label[0].tolist() == p_s.argmax(1)[0].tolist()
    a = fuse(p_g, p_s, TAU, mode="avg")
    avg = 0.5 * (p_g + p_s)
    torch.testing.assert_close(a.probs, avg)
    assert a.mask[0].tolist() == (entropy(avg)[0] < TAU).tolist()
    assert a.label[0].tolist() == avg.argmax(1)[0].tolist()
    with pytest.raises(UnknownNameError, match="uapl"):
        fuse(p_g, p_s, TAU, mode="uapll")
    with pytest.raises(ValueError):
        fuse(None, p_s, TAU, mode="uapl")


def test_normalized_entropy_matches_scaled_threshold() -> None:
    g = torch.Generator().manual_seed(0)
    p_g = torch.softmax(torch.randn(2, 4, 8, 8, generator=g) * 2, 1)
    p_s = torch.softmax(torch.randn(2, 4, 8, 8, generator=g) * 2, 1)
    nat = fuse(p_g, p_s, uapl_threshold(10, 100, 4), mode="s_only")
    norm = fuse(p_g, p_s, uapl_threshold(10, 100, 4, normalized=True), mode="s_only", normalize_entropy=True)
    assert torch.equal(nat.mask, norm.mask)


def test_uapl_3d_and_no_grad() -> None:
    g = torch.Generator().manual_seed(1)
    p_g = torch.softmax(torch.randn(1, 3, 4, 5, 6, generator=g), 1).requires_grad_(True)
    p_s = torch.softmax(torch.randn(1, 3, 4, 5, 6, generator=g), 1)
    out = fuse(p_g, p_s, 0.9)
    assert out.label.shape == (1, 4, 5, 6) and out.mask.shape == (1, 4, 5, 6)
    assert not out.probs.requires_grad


def test_largest_component() -> None:
    lab = torch.zeros(2, 6, 6, dtype=torch.int64)
    lab[0, 0:2, 0:2] = 1  # 4 px
    lab[0, 4:6, 3:6] = 1  # 6 px: kept
    lab[0, 2, 2] = 1  # diagonal neighbour of the first blob: joins it (full connectivity) -> 5 px
    lab[0, 0, 5] = 2  # single component of class 2: kept
    out = largest_component(lab, num_classes=3)
    expected = torch.zeros(6, 6, dtype=torch.int64)
    expected[4:6, 3:6] = 1
    expected[0, 5] = 2
    assert torch.equal(out[0], expected)
    assert torch.equal(out[1], lab[1])  # empty image stays empty
    vol = torch.zeros(1, 3, 3, 3, dtype=torch.int64)
    vol[0, 0, 0, 0] = 1
    vol[0, 2, 2, 1:3] = 1
    assert int(largest_component(vol, 2).sum()) == 2


def test_authors_probs_softmax_of_one_minus_sum_and_foreground() -> None:
    """softmax([1 - sum fg, fg]) (authors' code): a certain foreground pixel gets (1/(1+e), e/(1+e)),
    a certain background pixel the reverse; an unprompted class counts as fg = 0."""
    import math

    from uncol.pseudo.uapl import authors_probs

    fg = torch.tensor([[[[1.0, 0.0]]]])  # (B=1, K-1=1, 1, 2)
    p = authors_probs(fg, torch.tensor([[True]]))
    e = math.e
    torch.testing.assert_close(p[0, :, 0, 0], torch.tensor([1 / (1 + e), e / (1 + e)]))
    torch.testing.assert_close(p[0, :, 0, 1], torch.tensor([e / (1 + e), 1 / (1 + e)]))
    q = authors_probs(fg, torch.tensor([[False]]))
    torch.testing.assert_close(q[0, :, 0, 0], torch.tensor([e / (1 + e), 1 / (1 + e)]))
