"""Which unlabelled case to annotate next (``uncol suggest``).

Each case is scored two ways, both at the case's native size:

- **student uncertainty**: the mean voxel entropy of the prompt-free student's probabilities, divided by
  ``ln K`` (0 = certain everywhere, 1 = uniform everywhere);
- **teacher–student disagreement** (UnCoL has both at hand): the foundation teacher G is prompted with
  tight boxes (2D, slice-wise) or points (3D) taken from the *student's own* mask, as UnCoL prompts G
  with pseudo-labels in stage 2; ``1 - Dice`` between the student's mask and G's mask (mean over the
  foreground classes present in either; 0 when neither has foreground) says where the student's shape
  is not what the foundation model sees inside the student's own box; the mean symmetric KL between
  the two probability maps is reported beside it.

The ranking is the mean of the two ranks (Borda count; ties keep case order), or the uncertainty rank
alone without a teacher. Written: ``OUT/suggest.csv`` (one row per case, best to annotate first),
``OUT/thumbnails/NN_case.png`` for the first ``top`` cases (image, student contour red, teacher
contour cyan; the middle foreground slice of a volume) and ``OUT/suggest.md`` showing them.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from uncol.pseudo.uncertainty import hard_label

COLUMNS = ("rank", "case", "score", "entropy", "disagreement", "sym_kl", "fg_fraction")


def mean_entropy(probs: Tensor) -> float:
    """Mean entropy of ``probs (K, *S)`` over voxels, divided by ``ln K``: in [0, 1]."""
    p = probs.clamp_min(1e-12)
    return float((-(p * p.log()).sum(0)).mean() / math.log(probs.shape[0]))


def mask_disagreement(a: np.ndarray, b: np.ndarray, num_classes: int) -> float:
    """``1 - mean Dice`` of two label maps ``(*S)`` over the foreground classes present in either (0 if none)."""
    dices = []
    for c in range(1, num_classes):
        x, y = a == c, b == c
        n = int(x.sum()) + int(y.sum())
        if n:
            dices.append(2.0 * int((x & y).sum()) / n)
    return 1.0 - float(np.mean(dices)) if dices else 0.0


def symmetric_kl(p: Tensor, q: Tensor, eps: float = 1e-6) -> float:
    """Mean over voxels of ``(KL(p||q) + KL(q||p)) / 2`` for class probabilities ``(K, *S)`` (nats)."""
    p, q = p.clamp_min(eps), q.clamp_min(eps)
    return float((0.5 * ((p - q) * (p.log() - q.log())).sum(0)).mean())


def rank_rows(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Sort ``rows`` by the mean of their ranks on ``keys`` (higher value = rank 1); sets ``score``
    (that mean rank, lower = annotate first) and ``rank`` (1..n)."""
    for r in rows:
        r["score"] = 0.0
    for k in keys:
        order = sorted(range(len(rows)), key=lambda i: -rows[i][k])
        for pos, i in enumerate(order, start=1):
            rows[i]["score"] += pos / len(keys)
    ranked = sorted(rows, key=lambda r: r["score"])
    for pos, r in enumerate(ranked, start=1):
        r["rank"] = pos
    return ranked


@torch.no_grad()
def teacher_probs(teacher: Any, image: Tensor, student_mask: Tensor, num_classes: int) -> Tensor:
    """G's probabilities ``(K, *S)`` for ``image (C, *S)``, prompted by tight boxes/points of ``student_mask (*S)``."""
    from uncol.teachers.prompts import prompts_from_masks

    prompts = prompts_from_masks(student_mask[None].long(), num_classes, kind=teacher.prompt_kind, jitter_px=0.0,
                                 generator=torch.Generator().manual_seed(0))
    emb = teacher.encode(image[None])
    return teacher.decode(emb, prompts, num_classes, tuple(image.shape[1:])).probs[0].float().cpu()


def score_case(model: Any, teacher: Any, case: Any, cfg: Any, device: torch.device, k: int) -> tuple[dict, dict]:
    """One case's row (``entropy``, ``disagreement``, ``sym_kl``, ``fg_fraction``) and its maps for a thumbnail."""
    from uncol.eval.inference import predict_probs

    probs = predict_probs(model, case.image, cfg, device)
    mask = hard_label(probs, dim=0)
    row = {"case": case.case, "entropy": mean_entropy(probs), "fg_fraction": float((mask > 0).float().mean()),
           "disagreement": float("nan"), "sym_kl": float("nan")}
    maps = {"image": case.image[0].numpy(), "student": mask.numpy(), "teacher": None}
    if teacher is not None:
        pt = teacher_probs(teacher, case.image.to(device), mask.to(device), k)
        row["disagreement"] = mask_disagreement(mask.numpy(), hard_label(pt, dim=0).numpy(), k)
        row["sym_kl"] = symmetric_kl(probs, pt)
        maps["teacher"] = hard_label(pt, dim=0).numpy()
    return row, maps


def _thumbnail(maps: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from uncol.runtime import atomic_write

    img, stu, tea = maps["image"], maps["student"], maps["teacher"]
    if img.ndim == 3:  # the slice with the most student foreground (the middle one without any)
        fg = (stu > 0).reshape(stu.shape[0], -1).sum(1)
        z = int(fg.argmax()) if fg.any() else stu.shape[0] // 2
        img, stu, tea = img[z], stu[z], (None if tea is None else tea[z])
    fig, ax = plt.subplots(figsize=(3, 3 * img.shape[0] / max(img.shape[1], 1)), dpi=100)
    ax.imshow(img, cmap="gray")
    for m, color in ((stu, "red"), (tea, "cyan")):
        if m is not None and (m > 0).any() and not (m > 0).all():
            ax.contour((m > 0).astype(float), levels=[0.5], colors=color, linewidths=1)
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, lambda p: p.write_bytes(buf.getvalue()))


def _write(rows: list[dict], out: Path, top_maps: list[tuple[dict, dict]]) -> None:
    from uncol.runtime import atomic_write, atomic_write_text

    def write_csv(p: Path) -> None:
        with p.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            for r in rows:
                w.writerow({c: (f"{r[c]:.6g}" if isinstance(r[c], float) else r[c]) for c in COLUMNS})

    atomic_write(out / "suggest.csv", write_csv)
    lines = ["# Cases to annotate next", "", ("Red: the student's mask; cyan: the foundation teacher's mask "
             "when prompted by the student's box. Full ranking: `suggest.csv`."), "",
             "| rank | case | entropy | 1 - Dice (G vs student) | thumbnail |", "|---|---|---|---|---|"]
    for r, maps in top_maps:
        name = f"thumbnails/{r['rank']:02d}_{r['case']}.png"
        _thumbnail(maps, out / name, f"#{r['rank']} {r['case']}")
        lines.append(f"| {r['rank']} | {r['case']} | {r['entropy']:.3f} | {r['disagreement']:.3f} | ![]({name}) |")
    atomic_write_text(out / "suggest.md", "\n".join(lines) + "\n")


def suggest(checkpoint: str | Path, data: str | Path, out: str | Path | None = None, split: str = "unlabeled",
            split_file: str | Path | None = None, teacher: str | None = None, device: str = "auto",
            top: int = 12, progress: bool = True) -> list[dict[str, Any]]:
    """Rank the cases of ``split`` (default: the run's unlabelled training cases) for annotation.

    ``teacher``: registry name of the foundation teacher (default: the checkpoint's ``teacher.name``;
    ``"none"``: rank by the student's uncertainty only). ``out``: default ``suggest/`` beside the checkpoint
    (where ``uncol report RUN`` finds it); written all or nothing (:func:`uncol.runtime.staged_output_dir`).
    Returns the ranked rows (``COLUMNS``).
    """
    from tqdm.auto import tqdm

    from uncol.data.datasets import load_case
    from uncol.eval.evaluate import checkpoint_and_cases, guard_out
    from uncol.runtime import staged_output_dir
    from uncol.teachers import build_teacher

    outp = guard_out(Path(checkpoint).parent / "suggest" if out is None else out, data)
    model, cfg, ckpt, spec, ids, dev = checkpoint_and_cases(checkpoint, data, split, split_file, device)
    tcfg = replace(cfg.teacher, name=teacher or cfg.teacher.name, mode="online")  # native-size images: no cache
    g = build_teacher(tcfg, spatial_dims=spec.ndim)
    g = None if g is None else g.to(dev)
    k = int(ckpt["num_classes"])
    scored = []
    for cid in tqdm(ids, desc="suggest", disable=not progress, dynamic_ncols=True):
        scored.append(score_case(model, g, load_case(spec, cid, cfg.data, with_label=False), cfg, dev, k))
    maps = {r["case"]: m for r, m in scored}
    rows = rank_rows([r for r, _ in scored], ("entropy", "disagreement") if g is not None else ("entropy",))
    with staged_output_dir(outp) as stage:
        _write(rows, stage, [(r, maps[r["case"]]) for r in rows[:top]])
    return rows
