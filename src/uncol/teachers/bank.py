"""A bank of G's prompt-fused tokens for the labelled images (ours; an approximation, off by default).

UnCoL's stage 1 prompts G with the ground-truth boxes of each copy-pasted labelled image and runs its mask
decoder every step (the two-way transformer over 64×64 tokens: about a third of a cached stage-1 step on a
CPU). With ``method.params.stage1_g_tokens: bank`` the decoder runs once per labelled image instead, ``size``
times with independently jittered boxes (the same jitter as a step's), on the un-augmented image; a step's
image gets one of its source's banked token maps, drawn at random, moved by the step's augmentation and
copy-pasted with the same mask as the image (as a cached G's features are, ``cache.py``). The decoder's
output is not linear in its input, so a mixed image's tokens are approximated by the mix of its sources'
tokens: ``benchmarks/stage1_bank.py`` measures how far that is from decoding, against the spread that the
box jitter alone causes.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from uncol.teachers.base import Teacher
from uncol.teachers.cache import image_hash, warp
from uncol.teachers.prompts import prompts_from_masks


class FusedTokenBank:
    """``size`` jittered-box decodes per labelled image, as token maps ``(size, C, *grid)`` (fp16, CPU)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"bank size must be >= 1, got {size}")
        self.size = size
        self.maps: dict[str, Tensor] = {}

    def __len__(self) -> int:
        return len(self.maps)

    @torch.no_grad()
    def fill(self, teacher: Teacher, samples: Iterable[tuple[Tensor, Tensor]], num_classes: int,
             generator: torch.Generator, **prompt_kw: Any) -> None:
        """Decode each ``(image (C, *S), label (*S))`` ``size`` times (prompts from ``label``: ``prompt_kw``
        as :func:`prompts_from_masks` takes them, jitter included); images already banked are skipped."""
        for image, label in samples:
            key = image_hash(image)
            if key in self.maps:
                continue
            emb = teacher.encode(image[None])
            labels = label[None].expand(self.size, *label.shape)
            prompts = prompts_from_masks(labels, num_classes, kind=teacher.prompt_kind, generator=generator, **prompt_kw)
            out = teacher.decode(emb.select([0] * self.size), prompts, num_classes, tuple(label.shape),
                                 outputs=("fused",))
            fused = out.fused  # (size, N, C)
            self.maps[key] = fused.transpose(1, 2).reshape(self.size, fused.shape[2], *out.fused_grid).half().cpu()

    def draw(self, part: dict, generator: torch.Generator) -> Tensor:
        """Token maps ``(B, C, *grid)`` for a batch part's images (``base_image``, ``aug_theta``): one banked
        decode per image, drawn with ``generator``, moved by the image's augmentation."""
        base, theta = part["base_image"], part["aug_theta"]
        picks = []
        for img in base:
            bank = self.maps.get(image_hash(img))
            if bank is None:
                raise KeyError("an image of the batch is not in the G token bank (filled from the labelled set)")
            picks.append(bank[int(torch.randint(len(bank), (1,), generator=generator))])
        x = torch.stack(picks).to(base.device, torch.float32)
        eye = torch.eye(theta.shape[1], theta.shape[2], device=theta.device).expand_as(theta)
        return x if torch.equal(theta, eye) else warp(x, theta)
