"""Slice-wise teacher (ours): any registered 2D teacher applied slice by slice to 3D volumes.

The volume ``(B, C, D, H, W)`` is cut along its first spatial axis D into ``B*D`` images that the 2D
teacher encodes (``chunk`` slices at a time); the results are stacked back:
visual ``(B, C_j, D, h_j, w_j)``, embedding ``(B, 256, D, 64, 64)``, probabilities ``(B, K, D, H, W)``,
fused tokens ``(B, D*h*w, 256)`` with ``fused_grid = (D, h, w)``. ``pool`` > 1 area-pools the visual
maps and the fused token grid in-plane (a 128-slice volume otherwise holds 128×4096 fused tokens).
Prompts are per-slice boxes (``prompt_kind = "slice_boxes"``, ``prompts.slice_boxes_from_mask``);
a slice without a box gets background there, as in 2D.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from uncol.config import from_dict
from uncol.errors import ConfigError
from uncol.teachers.base import OUTPUTS, TEACHERS, ClassPrompts, Teacher, TeacherEmbedding, TeacherOutput


@dataclass(frozen=True)
class SliceWiseParams:
    base: str = "litemedsam"  # a registered 2D teacher
    base_params: dict = field(default_factory=dict)  # that teacher's params
    chunk: int = 16  # slices per encode/decode call (memory)
    pool: int = 1  # in-plane area pooling of visual maps and fused tokens (1 = none)


def _pool2d(x: Tensor, k: int) -> Tensor:
    return x if k == 1 else F.avg_pool2d(x, k)


@TEACHERS.register("slicewise")
class SliceWiseTeacher(Teacher):
    """Wraps a 2D :class:`Teacher` for 3D volumes; see the module docstring for shapes."""

    Params = SliceWiseParams
    spatial_dims = 3
    prompt_kind = "slice_boxes"

    def __init__(self, base: Teacher, chunk: int = 16, pool: int = 1) -> None:
        super().__init__()
        if base.spatial_dims != 2:
            raise ConfigError(f"config key 'teacher.params.base' must name a 2D teacher, got a {base.spatial_dims}D one")
        if chunk < 1 or pool < 1:
            raise ConfigError(f"config keys 'teacher.params.chunk'/'pool' must be >= 1, got {chunk}/{pool}")
        self.base = base
        self.chunk = chunk
        self.pool = pool
        self.embed_dim = base.embed_dim
        self.visual_dims = list(base.visual_dims)
        self.freeze()

    @classmethod
    def build(cls, checkpoint: str | None, params: SliceWiseParams, spatial_dims: int) -> SliceWiseTeacher:
        try:
            base_cls = TEACHERS.get(params.base)
        except KeyError as e:
            raise ConfigError(f"config key 'teacher.params.base': {e}") from None
        base_params = from_dict(base_cls.Params, params.base_params, prefix="teacher.params.base_params")
        return cls(base_cls.build(checkpoint, base_params, 2), params.chunk, params.pool)

    def fingerprint(self) -> str:
        return f"slicewise|pool={self.pool}|{self.base.fingerprint()}"

    def encode(self, images: Tensor) -> TeacherEmbedding:
        """images ``(B, C, D, H, W)`` -> visual ``(B, C_j, D, h_j, w_j)``, embedding ``(B, 256, D, 64, 64)``."""
        if images.dim() != 5:
            raise ValueError(f"slicewise teacher takes volumes (B, C, D, H, W), got shape {tuple(images.shape)}")
        b, c, d, h, w = images.shape
        flat = images.permute(0, 2, 1, 3, 4).reshape(b * d, c, h, w)
        embs = [self.base.encode(flat[i:i + self.chunk]) for i in range(0, b * d, self.chunk)]
        e = TeacherEmbedding.cat(embs)

        def stack(t: Tensor) -> Tensor:  # (B*D, C, h, w) -> (B, C, D, h, w)
            return t.reshape(b, d, *t.shape[1:]).transpose(1, 2)

        visual = [stack(_pool2d(v, self.pool)) for v in e.visual]
        return TeacherEmbedding(visual, stack(e.embedding), (d, h, w))

    def decode(
        self, emb: TeacherEmbedding, prompts: list[ClassPrompts], num_classes: int, out_size: tuple[int, ...],
        outputs: Collection[str] = OUTPUTS,
    ) -> TeacherOutput:
        """Probabilities ``(B, K, *out_size)``, fused ``(B, D*h*w, 256)`` with grid ``(D, h, w)``.

        Only the slices that carry a prompt are decoded (batched, ``chunk`` at a time) unless ``"fused"`` is
        in ``outputs``: a slice without a prompt has background probability 1 whatever its decoder says, so
        decoding it serves only its fused tokens."""
        b = emb.batch_size
        d = emb.image_size[0]
        if len(prompts) != b or any(p.slices is None or len(p.slices) != d for p in prompts):
            raise ValueError(
                f"slicewise decode needs one ClassPrompts per volume with .slices of length D={d}; "
                "build them with prompts.make_prompts(labels, K, kind='slice_boxes')"
            )
        e = emb.embedding.transpose(1, 2)  # (B, D, 256, 64, 64)
        flat_emb = e.reshape(b * d, *e.shape[2:])
        flat_prompts = [s for p in prompts for s in p.slices]  # type: ignore[union-attr]
        todo = (list(range(b * d)) if "fused" in outputs
                else [i for i, s in enumerate(flat_prompts) if any(0 < c < num_classes for c in s.classes())])
        outs, size2 = [], tuple(out_size[1:])
        for k in range(0, len(todo), self.chunk):
            idx = todo[k:k + self.chunk]
            sub = TeacherEmbedding([], flat_emb[idx], tuple(emb.image_size[1:]))
            outs.append(self.base.decode(sub, [flat_prompts[i] for i in idx], num_classes, size2, outputs))
        dev = flat_emb.device
        prompted = torch.zeros(b * d, num_classes, dtype=torch.bool, device=dev)
        if todo:
            prompted[todo] = torch.cat([o.prompted for o in outs]).to(dev)
        prompted = prompted.reshape(b, d, num_classes).any(dim=1)
        probs = fg = fused = None
        grid: tuple[int, ...] = (d, *emb.embedding.shape[3:])
        if "probs" in outputs:
            probs, fg = self._stack_probs(outs, todo, b, d, num_classes, size2, out_size, dev)
        if "fused" in outputs:
            fused = torch.cat([o.fused for o in outs])  # type: ignore[misc]  # (B*D, h*w, C)
            gh, gw = outs[0].fused_grid
            fmap = _pool2d(fused.transpose(1, 2).reshape(b * d, -1, gh, gw), self.pool)
            grid = (d, *fmap.shape[2:])
            fused = fmap.flatten(2).transpose(1, 2).reshape(b, -1, fmap.shape[1])
        return TeacherOutput(probs, fused, grid, prompted, fg)

    @staticmethod
    def _stack_probs(outs: list[TeacherOutput], todo: list[int], b: int, d: int, num_classes: int,
                     size2: tuple[int, ...], out_size: tuple[int, ...], dev: torch.device) -> tuple[Tensor, Tensor | None]:
        """Per-slice outputs of the decoded slices ``todo`` -> ``probs (B, K, *out_size)`` and ``fg``;
        the other slices are background (probability 1) with foreground 0."""
        probs = torch.zeros(b * d, num_classes, *size2, device=dev)
        probs[:, 0] = 1.0
        fg: Tensor | None = torch.zeros(b * d, num_classes - 1, *size2, device=dev)
        if todo:
            probs[todo] = torch.cat([o.probs for o in outs]).to(dev)  # type: ignore[misc]
            if all(o.fg is not None for o in outs):
                fg[todo] = torch.cat([o.fg for o in outs]).to(dev)  # type: ignore[index, misc]
            else:
                fg = None
        probs = probs.reshape(b, d, *probs.shape[1:]).transpose(1, 2)  # (B, K, D, H', W')
        if probs.shape[2] != out_size[0]:
            probs = F.interpolate(probs, size=tuple(out_size), mode="trilinear", align_corners=False)
            probs = probs / probs.sum(dim=1, keepdim=True).clamp_min(1e-12)
        if fg is not None:
            fg = fg.reshape(b, d, *fg.shape[1:]).transpose(1, 2)  # (B, K-1, D, H', W')
            if fg.shape[2] != out_size[0]:
                fg = F.interpolate(fg, size=tuple(out_size), mode="trilinear", align_corners=False)
        return probs, fg
