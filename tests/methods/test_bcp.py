"""BCP: the bidirectional mixing of images/labels, the 1 and 0.5 loss weights, the stages and the EMA."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from uncol.config import Config, from_dict
from uncol.data.sampler import Batch
from uncol.errors import ConfigError
from uncol.losses.segmentation import mix_loss
from uncol.methods.base import MethodContext
from uncol.methods.bcp import BCP, BCPParams, halves

LN2 = math.log(2)
# Uniform logits (K = 2) against an all-background target: CE = ln 2; Dice: class 0 = 1 - 1/1.25 = 0.2,
# class 1 (absent) = 1 -> mean 0.6.
UNIFORM = LN2 + 0.6


def _method(model: nn.Module, **params) -> BCP:
    cfg = from_dict(Config, {"method": {"name": "bcp", "params": params},
                             "train": {"iterations": 10, "batch_size": 2, "labeled_bs": 2, "unlabeled_bs": 2}})
    ctx = MethodContext(cfg=cfg, model=model, teacher=None, num_classes=2, spatial_dims=2)
    return BCP(ctx, from_dict(BCPParams, params))


def _zero_conv() -> nn.Conv2d:
    conv = nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
    return conv


def test_mix_loss_weights_ground_truth_1_and_pseudo_part_half() -> None:
    target = torch.zeros(1, 6, 6, dtype=torch.long)
    labeled = torch.zeros(1, 6, 6, dtype=torch.bool)
    labeled[:, :, :3] = True
    logits = torch.zeros(1, 2, 6, 6)
    assert mix_loss(logits, target, labeled).item() == pytest.approx(0.5 * (1 + 0.5) * UNIFORM, rel=1e-6)
    # perfect where the ground truth is, uniform elsewhere: only the pseudo part is left, at weight 0.5
    logits[:, 0][labeled] = 20.0
    logits[:, 1][labeled] = -20.0
    assert mix_loss(logits, target, labeled).item() == pytest.approx(0.5 * 0.5 * UNIFORM, rel=1e-6)
    assert mix_loss(logits, target, ~labeled).item() == pytest.approx(0.5 * 1.0 * UNIFORM, rel=1e-6)


def test_bidirectional_mix_takes_ground_truth_where_the_labelled_image_is() -> None:
    m = _method(_zero_conv())
    xl = torch.tensor([1.0, 2.0]).view(2, 1, 1, 1).expand(2, 1, 6, 6)  # labelled images: 1 (a) and 2 (b)
    xu = -xl  # unlabelled images: -1 (a) and -2 (b)
    yl = torch.ones(2, 6, 6, dtype=torch.long)
    pl = torch.full((2, 6, 6), 2, dtype=torch.long)
    mask = torch.ones(6, 6, dtype=torch.bool)
    mask[1:5, 1:5] = False  # a BCP mask (bcp_mask's layout) with its 4x4 block [1:5, 1:5] in the middle
    assert (~mask).sum() == 16 and not mask[1:5, 1:5].any()
    (x_in, y_in, gt_in), (x_out, y_out, gt_out) = m.bidirectional(xl, yl, xu, pl, mask)
    # X_in: labelled image b outside the block, unlabelled image b pasted inside
    assert torch.equal(gt_in[0], mask)
    assert torch.equal(x_in[0, 0], torch.where(mask, 2.0, -2.0))
    assert torch.equal(y_in[0], torch.where(mask, 1, 2))
    # X_out: unlabelled image a outside, labelled image a pasted inside the block
    assert torch.equal(gt_out[0], ~mask)
    assert torch.equal(x_out[0, 0], torch.where(mask, -1.0, 1.0))
    assert torch.equal(y_out[0], torch.where(mask, 2, 1))


def test_halves() -> None:
    x = torch.arange(4)
    assert [t.tolist() for t in halves(x)] == [[0, 1], [2, 3]]
    assert [t.tolist() for t in halves(x[:1])] == [[0], [0]]


def test_selftrain_loss_known_answer() -> None:
    # student and teacher give uniform logits -> pseudo-label 0 everywhere; ground truth 0 everywhere:
    # each mixed image costs 0.5 (1 + 0.5) (ln 2 + 0.6), and there are two of them.
    m = _method(_zero_conv())
    m.begin_stage("selftrain")
    b = Batch(labeled={"image": torch.randn(2, 1, 6, 6), "label": torch.zeros(2, 6, 6, dtype=torch.long)},
              unlabeled={"image": torch.randn(2, 1, 6, 6)})
    out = m.train_step(b, 0, 10)
    assert out.loss.item() == pytest.approx(2 * 0.75 * UNIFORM, rel=1e-6)
    assert out.parts["loss_in"] == pytest.approx(0.75 * UNIFORM, rel=1e-6)
    # pre-training: one mixed labelled image, both parts at weight 1
    m.begin_stage("pretrain")
    assert m.train_step(b, 0, 10).loss.item() == pytest.approx(UNIFORM, rel=1e-6)


def test_teacher_starts_from_the_pretrained_student_and_follows_in_selftrain_only() -> None:
    torch.manual_seed(0)
    m = _method(nn.Conv2d(1, 2, 1))
    assert [s.name for s in m.stages()] == ["pretrain", "selftrain"]
    m.begin_stage("pretrain")
    with torch.no_grad():
        m.student.weight.add_(1.0)
    before = m.ema.module.weight.clone()
    m.after_step(0, 10)
    assert torch.equal(m.ema.module.weight, before)  # no EMA during pre-training
    m.begin_stage("selftrain")
    assert torch.equal(m.ema.module.weight, m.student.weight)
    with torch.no_grad():
        m.student.weight.add_(1.0)
    m.after_step(0, 10)
    torch.testing.assert_close(m.ema.module.weight, m.student.weight - 0.99)  # 0.99 W + 0.01 (W + 1)


def test_pseudo_label_largest_component_option() -> None:
    m = _method(nn.Identity(), largest_component=True)
    logits = torch.zeros(1, 2, 1, 7)
    logits[0, 1, 0, [0, 1, 2, 5]] = 1.0  # class 1 at pixels 0-2 and 5 -> keep the larger run
    assert m.pseudo_label(logits)[0, 0].tolist() == [1, 1, 1, 0, 0, 0, 0]


def test_unequal_streams_are_a_config_error() -> None:
    m = _method(_zero_conv())
    m.begin_stage("selftrain")
    b = Batch(labeled={"image": torch.randn(2, 1, 6, 6), "label": torch.zeros(2, 6, 6, dtype=torch.long)},
              unlabeled={"image": torch.randn(1, 1, 6, 6)})
    with pytest.raises(ConfigError, match="labeled_bs"):
        m.train_step(b, 0, 10)
