"""The generalized-teacher interface: the one place that says what a teacher is.

A teacher is a frozen promptable foundation model behind two calls, in the spirit of SAM's
``SamPredictor`` (encode the image once, answer prompts cheaply):

``encode(images) -> TeacherEmbedding``
    ``images`` is the student's input ``(B, C, *S)`` (normalised however the data layer
    normalised it); the teacher rescales each image to its own input itself (min-max, resize, pad).
    Returns ``.visual``: the encoder features named by the distillation layer map, a list of
    ``(B, C_j, *grid_j)`` tensors (SPEC §2.1), and ``.embedding``: the image embedding that
    ``decode`` needs. This is the expensive part, and the part ``cache.py`` stores.

``decode(emb, prompts, num_classes, out_size, outputs=OUTPUTS) -> TeacherOutput``
    One :class:`ClassPrompts` per image (box per class in 2D, points per class in 3D, per-slice
    boxes for slice-wise teachers: see ``prompt_kind``). ``outputs`` names what the caller uses,
    ``"probs"`` and/or ``"fused"``; a teacher may skip computing the other (it is then None: SAM's
    mask upscaling is skipped when only the fused tokens are used). Returns ``.probs`` ``(B, K, *out_size)``
    class probabilities, ``.fused`` ``(B, N, embed_dim)`` prompt-fused image tokens (the image-side
    output of the mask decoder's two-way transformer, averaged over the prompted classes; SPEC §2.2)
    and ``.fused_grid`` (the token grid of ``.fused``, ``prod(fused_grid) == N``).

Coordinate conventions (all in the frame of the images given to ``encode``, in pixels/voxels):
boxes are ``(x0, y0, x1, y1)`` with inclusive corner pixel indices (x = column, y = row);
points are ``(P, ndim)`` index coordinates in torch axis order (``(y, x)`` in 2D, ``(z, y, x)`` in 3D)
with labels ``(P,)``: 1 positive, 0 negative.

A class that has no prompt contributes foreground probability 0, so background gets everything
there. Multi-class maps from a binary promptable model (SPEC §3, ours): one decoder run per prompted
class, ``p_bg = prod_c (1 - p_c)``, then all ``K`` channels renormalised to sum to 1
(:func:`combine_class_probs`).

Adding a teacher = one class: subclass :class:`Teacher`, give it a ``Params`` dataclass (validated from
``teacher.params``) and a ``build`` classmethod, and register it::

    @TEACHERS.register("my_teacher")
    class MyTeacher(Teacher):
        Params = MyParams
        @classmethod
        def build(cls, checkpoint, params, spatial_dims): ...

Teachers are frozen: ``requires_grad_(False)``, always in eval mode (``train()`` is a no-op), and
meant to be called under ``torch.no_grad()`` (prefer it to ``inference_mode`` when the outputs
become loss targets).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from uncol.registry import Registry

Box = tuple[float, float, float, float]
OUTPUTS: tuple[str, ...] = ("probs", "fused")  # what ``Teacher.decode`` computes unless told less


@dataclass
class PointPrompt:
    """Point prompts for one class: ``coords (P, ndim)`` float index coordinates in torch axis order,
    ``labels (P,)`` int64, 1 = positive (inside), 0 = negative (outside)."""

    coords: Tensor
    labels: Tensor


@dataclass
class ClassPrompts:
    """The prompts for ONE image; absent classes get no prompt (and background probability).

    ``boxes``: class -> ``(x0, y0, x1, y1)`` (2D). ``points``: class -> :class:`PointPrompt` (2D or 3D).
    ``slices``: per-slice 2D prompts along the first spatial axis of a 3D image, for slice-wise teachers.
    """

    boxes: dict[int, Box] = field(default_factory=dict)
    points: dict[int, PointPrompt] = field(default_factory=dict)
    slices: list[ClassPrompts] | None = None

    def classes(self) -> list[int]:
        """Sorted foreground classes that have a box or points."""
        return sorted(set(self.boxes) | set(self.points))


@dataclass
class TeacherEmbedding:
    """What ``encode`` returns for a batch; ``image_size`` is the ``*S`` of the images encoded.

    ``visual``: list of ``(B, C_j, *grid_j)``; ``embedding``: ``(B, C_e, *grid_e)`` (SAM: ``(B, 256, 64, 64)``).
    """

    visual: list[Tensor]
    embedding: Tensor
    image_size: tuple[int, ...]

    @property
    def batch_size(self) -> int:
        return int(self.embedding.shape[0])

    def map(self, fn: Any) -> TeacherEmbedding:
        """Apply ``fn`` to every tensor (visual and embedding)."""
        return TeacherEmbedding([fn(v) for v in self.visual], fn(self.embedding), self.image_size)

    def to(self, *args: Any, **kwargs: Any) -> TeacherEmbedding:
        return self.map(lambda t: t.to(*args, **kwargs))

    def select(self, index: Tensor | list[int] | slice) -> TeacherEmbedding:
        """The entries ``index`` of the batch."""
        return self.map(lambda t: t[index])

    @staticmethod
    def cat(items: list[TeacherEmbedding]) -> TeacherEmbedding:
        """Concatenate along the batch (all from images of the same size)."""
        sizes = {e.image_size for e in items}
        if len(sizes) != 1:
            raise ValueError(f"cannot concatenate embeddings of images of different sizes {sorted(sizes)}")
        visual = [torch.cat([e.visual[j] for e in items]) for j in range(len(items[0].visual))]
        return TeacherEmbedding(visual, torch.cat([e.embedding for e in items]), items[0].image_size)


@dataclass
class TeacherOutput:
    """``probs (B, K, *out_size)`` in [0, 1] summing to 1 over K; ``fused (B, N, embed_dim)`` (either is
    None when ``decode`` was told the caller does not use it);
    ``fused_grid`` with ``prod == N``; ``prompted (B, K)`` bool, which classes had a prompt
    (column 0, background, is always False); ``fg (B, K-1, *out_size)`` the per-class binary foreground
    probabilities ``probs`` was combined from (0 where unprompted; None if the teacher has none)."""

    probs: Tensor | None
    fused: Tensor | None
    fused_grid: tuple[int, ...]
    prompted: Tensor
    fg: Tensor | None = None


class Teacher(nn.Module):
    """Base class of every generalized teacher (see the module docstring for the contract)."""

    Params: ClassVar[type] = dataclasses.make_dataclass("NoParams", [])
    spatial_dims: int = 2
    embed_dim: int = 256
    visual_dims: ClassVar[list[int]] = []  # instances set their own list
    prompt_kind: str = "box"  # what prompts.make_prompts must build: box | points | slice_boxes

    @classmethod
    def build(cls, checkpoint: str | None, params: Any, spatial_dims: int) -> Teacher:
        """Build from ``teacher.checkpoint`` and the validated ``teacher.params``."""
        raise NotImplementedError

    def encode(self, images: Tensor) -> TeacherEmbedding:
        raise NotImplementedError

    def decode(
        self, emb: TeacherEmbedding, prompts: list[ClassPrompts], num_classes: int, out_size: tuple[int, ...],
        outputs: Collection[str] = OUTPUTS,
    ) -> TeacherOutput:
        raise NotImplementedError

    def encode_part(self, part: dict) -> TeacherEmbedding:
        """The embedding of a collated batch part's images (``part["image"] (B, C, *S)``, as augmented).

        :class:`~uncol.teachers.cache.CachedTeacher` serves it from the cache of the un-augmented images
        instead, moved by the part's augmentation."""
        return self.encode(part["image"])

    def serve(self, datasets: list[Any]) -> None:
        """Ask ``datasets`` for what :meth:`encode_part` needs (nothing for an online teacher)."""

    def fill_from(self, datasets: list[Any], device: torch.device | str, progress: bool = True) -> None:
        """Pre-compute what every later :meth:`encode_part` of ``datasets`` will read (nothing online)."""

    def encode_mixed(self, part: dict, mixed: Tensor, mix_fn: Any) -> TeacherEmbedding:
        """The embedding of ``mixed (B, C, *S)``, images mixed from ``part``'s images by ``mix_fn`` (a map
        ``(B, C, *g) -> (B, C, *g)`` valid at every grid): an online teacher encodes ``mixed`` itself; a
        cached one mixes its sources' cached features with ``mix_fn`` (ours, no encoder pass)."""
        return self.encode(mixed)

    def fingerprint(self) -> str:
        """A string that changes whenever ``encode`` could change: name, checkpoint hash, preprocessing."""
        raise NotImplementedError

    def forward(
        self, images: Tensor, prompts: list[ClassPrompts], num_classes: int
    ) -> tuple[TeacherEmbedding, TeacherOutput]:
        """``encode`` then ``decode`` at the images' own size."""
        emb = self.encode(images)
        return emb, self.decode(emb, prompts, num_classes, tuple(images.shape[2:]))

    def freeze(self) -> Teacher:
        """Eval mode, no gradients; ``train()`` stays a no-op afterwards."""
        super().train(False)
        self.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> Teacher:  # frozen: never leaves eval mode
        return super().train(False)


TEACHERS: Registry[type[Teacher]] = Registry("teacher")


def combine_class_probs(fg: Tensor, prompted: Tensor) -> Tensor:
    """Multi-class probabilities from per-class binary foreground probabilities (SPEC §3, ours).

    fg: ``(B, K-1, *S)`` foreground probability of classes 1..K-1 (ignored where not prompted);
    prompted: ``(B, K-1)`` bool. Unprompted classes count as 0; ``p_bg = prod_c (1 - p_c)``; the K
    channels are then divided by their sum. Returns ``(B, K, *S)``.
    """
    mask = prompted.to(fg.dtype).reshape(*prompted.shape, *([1] * (fg.dim() - 2)))
    fg = fg.clamp(0.0, 1.0) * mask
    bg = torch.prod(1.0 - fg, dim=1, keepdim=True)
    probs = torch.cat([bg, fg], dim=1)
    return probs / probs.sum(dim=1, keepdim=True).clamp_min(1e-12)
