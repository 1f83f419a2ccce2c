"""Evaluation of prompted models: a teacher (zero-shot, the "foundation model" rows) or a fine-tuned SAM
checkpoint (the Table 6 baselines), prompted from the ground truth and scored.

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

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from uncol.config import Config, DataConfig, TeacherConfig, from_dict
from uncol.data import DatasetSpec, Split, load_case
from uncol.errors import ConfigError
from uncol.eval.evaluate import guard_out, split_case_ids
from uncol.eval.metrics import MetricAccumulator
from uncol.methods import METHODS
from uncol.methods.finetune import PromptedModel
from uncol.pseudo.uncertainty import hard_label
from uncol.runtime import (
    atomic_write_json,
    load_checkpoint,
    load_state_strict,
    prepare_out_dir,
    resolve_device,
)
from uncol.teachers import build_teacher
from uncol.teachers.base import Teacher
from uncol.teachers.cache import CachedTeacher
from uncol.teachers.prompts import boxes_from_mask, make_prompts

SPLITS = ("train", "val", "test", "labeled", "unlabeled")


# -------------------------------------------------------------------------------- a prompted teacher
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
        return hard_label(out.probs)[0].cpu().numpy()
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
        pred[idx] = hard_label(out.probs).cpu()
    return pred.movedim(0, slice_axis).numpy()


def zero_shot(
    teacher: Teacher, spec: Any, case_ids: Sequence[str], cfg: DataConfig, jitter_px: float = 0.0, seed: int = 0,
    convention: str = "standard", slice_axis: int = 0, num_points: int = 1, progress: bool = True,
) -> dict[str, Any]:
    """Score ``teacher`` on ``case_ids`` of ``spec`` (a ``DatasetSpec``): the ``metrics.json`` dict,
    plus ``teacher``, ``jitter_px``, ``seed`` and ``seconds`` (wall time of the loop)."""
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


def zero_shot_dataset(teacher_name: str, data: str | Path, out: str | Path, checkpoint: str | None = None,
                      split: str | None = None, split_file: str | Path | None = None, jitter_px: float = 0.0,
                      seed: int = 0, limit: int = 0) -> dict[str, Any]:
    """``uncol zero-shot``: build the teacher, pick the cases, score, write ``<out>/metrics.json``.

    ``split`` names a list of ``split_file`` (default: every case of the dataset); ``limit`` > 0 keeps the first cases.
    """
    guard_out(out, data)
    spec = DatasetSpec.load(data)
    teacher = build_teacher(TeacherConfig(name=teacher_name, checkpoint=checkpoint, mode="online"), None)
    if teacher is None:
        raise ConfigError("--teacher none has nothing to evaluate; name a teacher such as litemedsam")
    case_ids: list[str] = spec.case_ids
    if split is not None:
        if split_file is None:
            raise ConfigError(f"--split {split!r} needs --split-file (a split JSON written by uncol train)")
        if split not in SPLITS:
            raise ConfigError(f"--split {split!r}: use one of {', '.join(SPLITS)}")
        case_ids = list(getattr(Split.load(Path(split_file)), split))
    if limit:
        case_ids = case_ids[:limit]
    res = zero_shot(teacher, spec, case_ids, DataConfig(root=str(spec.root), normalize="none"), jitter_px, seed)
    atomic_write_json(Path(out) / "metrics.json", res)
    return res


# ----------------------------------------------------------------------- fine-tuned SAM checkpoints
def is_prompted(method_name: str) -> bool:
    """Whether checkpoints of ``method_name`` need prompts at inference (score with :func:`evaluate_prompted`)."""
    return bool(getattr(METHODS.get(method_name), "prompted_eval", False))


def load_prompted(checkpoint: str | Path, device: torch.device,
                  cache_dir: str | Path | None = None) -> tuple[Teacher, Config, dict]:
    """The fine-tuned SAM of a checkpoint as a teacher (frozen) on ``device``, its config and the checkpoint.

    With ``cache_dir`` and a frozen encoder (``finetune_decoder``), image features come from (and go
    to) the teacher feature cache shared with zero-shot runs: the encoder's weights are the teacher's.
    """
    ckpt = load_checkpoint(checkpoint)
    cfg = from_dict(Config, ckpt["config"])
    cls = METHODS.get(cfg.method.name)
    if not getattr(cls, "prompted_eval", False):
        raise ConfigError(f"checkpoint {str(checkpoint)!r} is a {cfg.method.name!r} model: score it with uncol evaluate")
    params = from_dict(cls.Params, cfg.method.params, prefix="method.params")
    sam = build_teacher(replace(cfg.teacher, mode="online"), 2)
    cls.prepare_model(sam, params)
    load_state_strict(sam, ckpt["model"], f"checkpoint {str(checkpoint)!r}")
    sam.freeze().to(device)  # freeze() also refreshes TinyViT's cached attention biases
    enc: Teacher = CachedTeacher(sam, cache_dir) if (cache_dir and cls.encoder_frozen) else sam
    return PromptedModel(enc, sam, device), cfg, ckpt


def evaluate_prompted(checkpoint: str | Path, data: str | Path, out: str | Path, split: str = "test",
                      device: str = "auto", split_file: str | Path | None = None, jitter_px: float | None = None,
                      cache_dir: str | Path | None = None, progress: bool = True, limit: int = 0) -> dict[str, Any]:
    """Score a fine-tuned SAM checkpoint prompted with ground-truth boxes; writes ``OUT/metrics.json``.

    The split comes from ``split_file`` or ``split.json`` beside the checkpoint (``split="all"``: every
    case); ``limit`` > 0 keeps its first cases. ``jitter_px`` defaults to the run's
    ``method.params.eval_jitter_px`` (0: tight boxes).
    """
    guard_out(out, data)
    dev = resolve_device(device)
    teacher, cfg, _ = load_prompted(checkpoint, dev, cache_dir)
    spec = DatasetSpec.load(Path(data))
    ids = split_case_ids(spec, split, split_file or Path(checkpoint).parent / "split.json")
    ids = ids[:limit] if limit > 0 else ids
    params = from_dict(METHODS.get(cfg.method.name).Params, cfg.method.params, prefix="method.params")
    jit = params.eval_jitter_px if jitter_px is None else jitter_px
    res = zero_shot(teacher, spec, ids, cfg.data, jit, seed=0, convention=cfg.eval.convention,
                    slice_axis=cfg.data.slice_axis, progress=progress)
    res.update(checkpoint=str(checkpoint), split=split, prompt=f"ground-truth boxes, jitter {jit:g} px (1024 frame)")
    outp = Path(out)
    prepare_out_dir(outp)
    atomic_write_json(outp / "metrics.json", res)
    return res
