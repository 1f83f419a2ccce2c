"""Zero-shot evaluation of a teacher prompted from the ground truth: the "foundation model" rows.

2D cases: one box per foreground class (``jitter_px`` in MedSAM's 1024-px frame, 0 = tight).
3D cases: a 3D teacher gets its own prompt kind (points for SAM-Med3D, per-slice boxes for
``slicewise``); a 2D teacher runs on the 2D slices along ``slice_axis`` (slices without foreground are
predicted background without running the teacher). Predictions are the argmax of the teacher's
class probabilities at native resolution, scored with :class:`uncol.eval.metrics.MetricAccumulator`.

The command reads images with ``normalize="none"``: the teacher applies its own preprocessing (MedSAM:
min-max of the raw intensities). The data layer's percentile clipping saturates bright structures and
cost LiteMedSAM 1.5 Dice points on HC18 (20 images, tight boxes: 0.914 raw vs 0.900 clipped+z-scored).
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uncol.config import DataConfig, TeacherConfig
from uncol.teachers.base import Teacher
from uncol.teachers.prompts import boxes_from_mask, make_prompts


@torch.no_grad()
def predict_case(
    teacher: Teacher, image: torch.Tensor, label: np.ndarray, num_classes: int, jitter_px: float,
    generator: torch.Generator, slice_axis: int = 0, num_points: int = 1, chunk: int = 8,
) -> np.ndarray:
    """Label map ``(*S)`` predicted by ``teacher`` for one ``image (C, *S)`` prompted from ``label (*S)``."""
    lab = torch.from_numpy(np.asarray(label).astype(np.int64))
    if image.dim() - 1 == teacher.spatial_dims:
        x = image[None]
        prompts = make_prompts(lab[None], num_classes, teacher.prompt_kind, jitter_px=jitter_px,
                               generator=generator, num_pos=num_points)
        _, out = teacher(x, prompts, num_classes)
        return out.probs.argmax(1)[0].cpu().numpy()
    if not (teacher.spatial_dims == 2 and image.dim() == 4):
        raise ValueError(f"a {teacher.spatial_dims}D teacher cannot score a case of shape {tuple(image.shape[1:])}")
    vol = image.movedim(slice_axis + 1, 1)  # (C, N, h, w)
    labs = lab.movedim(slice_axis, 0)  # (N, h, w)
    pred = torch.zeros_like(labs)
    todo = [i for i in range(labs.shape[0]) if bool((labs[i] > 0).any())]
    for s in range(0, len(todo), chunk):
        idx = todo[s:s + chunk]
        x = vol[:, idx].transpose(0, 1)  # (n, C, h, w)
        prompts = [boxes_from_mask(labs[i], num_classes, jitter_px, generator) for i in idx]
        _, out = teacher(x, prompts, num_classes)
        pred[idx] = out.probs.argmax(1).cpu()
    return pred.movedim(0, slice_axis).numpy()


def zero_shot(
    teacher: Teacher, spec: Any, case_ids: Sequence[str], cfg: DataConfig, jitter_px: float = 0.0, seed: int = 0,
    convention: str = "standard", slice_axis: int = 0, num_points: int = 1, progress: bool = True,
) -> dict[str, Any]:
    """Score ``teacher`` on ``case_ids`` of ``spec`` (a ``DatasetSpec``): the ``metrics.json`` dict,
    plus ``teacher``, ``jitter_px``, ``seed`` and ``seconds`` (wall time of the loop)."""
    from tqdm.auto import tqdm

    from uncol.data import load_case
    from uncol.eval.metrics import MetricAccumulator

    names = [spec.labels[c] for c in sorted(spec.labels)]
    acc = MetricAccumulator(spec.num_classes, names, convention)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for cid in tqdm(list(case_ids), desc="zero-shot", disable=not progress):
        case = load_case(spec, cid, cfg)
        pred = predict_case(teacher, case.image, case.label, spec.num_classes, jitter_px, gen, slice_axis, num_points)
        acc.update(cid, pred, case.label, case.spacing)
    res = acc.aggregate()
    res.update(teacher=teacher.fingerprint(), jitter_px=jitter_px, seed=seed, seconds=time.perf_counter() - t0)
    return res


def zero_shot_command(a: argparse.Namespace) -> dict[str, Any]:
    """``uncol zero-shot``: build the teacher, pick the cases, score, write ``<out>/metrics.json``."""
    from uncol.data import DatasetSpec, Split
    from uncol.engine.io import atomic_write_json
    from uncol.errors import ConfigError
    from uncol.teachers import build_teacher

    spec = DatasetSpec.load(a.data)
    teacher = build_teacher(TeacherConfig(name=a.teacher, checkpoint=a.checkpoint, mode="online"), None)
    if teacher is None:
        raise ConfigError("--teacher none has nothing to evaluate; name a teacher such as litemedsam")
    case_ids: list[str] = spec.case_ids
    if a.split is not None:
        if a.split_file is None:
            raise ConfigError(f"--split {a.split!r} needs --split-file (a split JSON written by uncol train)")
        if a.split not in ("train", "val", "test", "labeled", "unlabeled"):
            raise ConfigError(f"--split {a.split!r}: use one of train, val, test, labeled, unlabeled")
        case_ids = list(getattr(Split.load(Path(a.split_file)), a.split))
    if getattr(a, "limit", 0):
        case_ids = case_ids[: a.limit]
    res = zero_shot(teacher, spec, case_ids, DataConfig(root=str(spec.root), normalize="none"), a.jitter, a.seed)
    atomic_write_json(Path(a.out) / "metrics.json", res)
    return res

