"""Prompts from masks: tight boxes, MedSAM's 20-px jitter scaled from the 1024 frame, seeds, empty classes, points."""
from __future__ import annotations

import torch

from uncol.teachers.prompts import (
    box_from_mask,
    boxes_from_mask,
    make_prompts,
    points_from_mask,
    prompts_from_masks,
    slice_boxes_from_mask,
)


def _label(h: int = 512, w: int = 256) -> torch.Tensor:
    lab = torch.zeros(h, w, dtype=torch.long)
    lab[100:200, 50:120] = 1  # rows 100..199, cols 50..119
    lab[300:310, 0:256] = 2  # touches the left and right borders
    return lab


def test_tight_boxes_are_the_bounding_boxes() -> None:
    p = boxes_from_mask(_label(), 4)
    assert p.boxes == {1: (50.0, 100.0, 119.0, 199.0), 2: (0.0, 300.0, 255.0, 309.0)}
    assert 3 not in p.boxes and p.classes() == [1, 2]  # empty class: no prompt


def test_jitter_within_20px_of_the_1024_frame_scaled_to_the_image() -> None:
    lab = _label()  # H=512, W=256: 20 px at 1024 -> 5 px in x, 10 px in y
    gen = torch.Generator().manual_seed(0)
    offs = []
    for _ in range(120):
        x0, y0, x1, y1 = box_from_mask(lab == 1, 20.0, gen)
        offs.append((50 - x0, 100 - y0, x1 - 119, y1 - 199))
    o = torch.tensor(offs)
    assert o.min() >= 0  # MedSAM's jitter moves every side outward
    assert o[:, [0, 2]].max() <= 5.0 and o[:, [1, 3]].max() <= 10.0
    assert o[:, [0, 2]].max() > 4.5 and o[:, [1, 3]].max() > 9.0  # and uses the range
    both = torch.tensor([box_from_mask(lab == 1, 20.0, gen, outward=False) for _ in range(60)])
    assert (both[:, 0] > 50).any() and (both[:, 0] < 50).any()


def test_jittered_boxes_are_clipped_to_the_image() -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(50):
        x0, _, x1, _ = box_from_mask(_label() == 2, 20.0, gen)
        assert x0 == 0.0 and x1 == 255.0


def test_same_seed_same_prompts() -> None:
    lab = _label()[None].repeat(2, 1, 1)
    a = make_prompts(lab, 3, "box", jitter_px=20, generator=torch.Generator().manual_seed(7))
    b = make_prompts(lab, 3, "box", jitter_px=20, generator=torch.Generator().manual_seed(7))
    c = make_prompts(lab, 3, "box", jitter_px=20, generator=torch.Generator().manual_seed(8))
    assert [p.boxes for p in a] == [p.boxes for p in b] != [p.boxes for p in c]
    assert a[0].boxes != a[1].boxes  # the generator advances between images


def test_points_inside_the_class_and_negatives_outside() -> None:
    lab = torch.zeros(20, 30, 40, dtype=torch.long)
    lab[5:10, 10:20, 12:30] = 1
    lab[15:18, 2:5, 2:5] = 2
    p = points_from_mask(lab, 4, num_pos=5, num_neg=3, generator=torch.Generator().manual_seed(0))
    assert sorted(p.points) == [1, 2]
    for c, pp in p.points.items():
        assert pp.coords.shape == (8, 3) and pp.labels.tolist() == [1] * 5 + [0] * 3
        vals = lab[tuple(pp.coords.long().T)]
        assert (vals[:5] == c).all() and (vals[5:] != c).all()


def test_points_restricted_to_low_entropy_voxels() -> None:
    lab = torch.zeros(10, 10, 10, dtype=torch.long)
    lab[2:8, 2:8, 2:8] = 1
    ent = torch.ones(10, 10, 10)
    ent[4:6, 4:6, 4:6] = 0.1  # the only confident part of the class
    p = points_from_mask(lab, 2, num_pos=6, generator=torch.Generator().manual_seed(0), entropy=ent, entropy_threshold=0.5)
    c = p.points[1].coords.long()
    assert ((c >= 4) & (c < 6)).all()
    q = make_prompts(lab[None], 2, "points", entropy=ent[None], num_pos=2, generator=torch.Generator().manual_seed(0))
    assert (q[0].points[1].coords.long() >= 4).all()  # default threshold: the class's median entropy


def test_slice_boxes_per_slice_and_empty_slices() -> None:
    lab = torch.zeros(3, 16, 16, dtype=torch.long)
    lab[1, 4:8, 2:6] = 1
    p = slice_boxes_from_mask(lab, 2)
    assert p.slices is not None and len(p.slices) == 3
    assert p.slices[0].boxes == {} and p.slices[1].boxes == {1: (2.0, 4.0, 5.0, 7.0)}
    assert prompts_from_masks(lab[None], 2, kind="slice_boxes")[0].slices[1].boxes == p.slices[1].boxes
    assert prompts_from_masks(lab[None], 2, spatial_dims=3)[0].points  # default 3D kind: points
