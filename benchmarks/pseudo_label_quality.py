"""How good are UnCoL's stage-2 pseudo-labels? Scores, against the (withheld) ground truth of the unlabelled
training images, what stage 2 would train on when it starts from a given student checkpoint:

- S: the student itself, prompt-free (stage 2 starts with S = the stage-1 student);
- G | S boxes: the generalized teacher prompted with tight boxes from S's pseudo-label (what stage 2 does);
- G | GT boxes: the generalized teacher prompted with ground-truth boxes (an upper bound G never gets);
- UAPL / average fusion of S and G | S boxes, at the first and last step's entropy threshold, with the
  share of pixels the UAPL mask admits.

Dice is pooled over all images per foreground class (then averaged over classes). The teacher reads the
run's feature cache (``teacher.cache_dir``), so a bench cell's cache makes this quick.

Usage: python benchmarks/pseudo_label_quality.py CHECKPOINT [--limit N] [--out JSON]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from uncol.data.dataset import DatasetSpec
from uncol.data.datasets import SegmentationDataset
from uncol.eval.evaluate import model_from_checkpoint
from uncol.pseudo.uapl import fuse
from uncol.teachers import build_teacher
from uncol.teachers.prompts import prompts_from_masks


def pooled_dice(pred: torch.Tensor, gt: torch.Tensor, k: int) -> list[float]:
    out = []
    for c in range(1, k):
        p, g = pred == c, gt == c
        den = p.sum() + g.sum()
        out.append(float(2 * (p & g).sum() / den) if den > 0 else float("nan"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--limit", type=int, default=0, help="score only the first N unlabelled images")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    model, cfg, _ = model_from_checkpoint(a.checkpoint, torch.device("cpu"))
    model.eval()
    split = json.loads((Path(a.checkpoint).parent / "split.json").read_text())
    spec = DatasetSpec.load(cfg.data.root)
    ds = SegmentationDataset(spec, split["unlabeled"], cfg.data, train=False, labeled=True)
    teacher = build_teacher(cfg.teacher, spatial_dims=cfg.data.spatial_dims).eval()
    k = len(spec.labels)
    n = len(ds) if not a.limit else min(a.limit, len(ds))
    preds: dict[str, list[torch.Tensor]] = {}
    gts, cover = [], {"start": [], "end": []}
    taus = {"start": 0.75 * math.log(k), "end": 1.0 * math.log(k)}
    with torch.no_grad():
        for i in range(0, n, 16):
            items = [ds[j] for j in range(i, min(i + 16, n))]
            x = torch.stack([it["image"] for it in items])
            y = torch.stack([it["label"] for it in items]).long()
            p_s = torch.softmax(model(x).float(), 1)
            s_lab = p_s.argmax(1)
            emb = teacher.encode(x)
            size = tuple(x.shape[2:])
            p_g = teacher.decode(emb, prompts_from_masks(s_lab, k, kind=teacher.prompt_kind, jitter_px=0.0),
                                 k, size).probs.float()
            p_gt = teacher.decode(emb, prompts_from_masks(y, k, kind=teacher.prompt_kind, jitter_px=0.0),
                                  k, size).probs.float()
            out = {"S": s_lab, "G | S boxes": p_g.argmax(1), "G | GT boxes": p_gt.argmax(1)}
            for when, tau in taus.items():
                pl = fuse(p_g, p_s, tau, mode="uapl")
                out[f"UAPL (tau {tau:.2f})"] = pl.label
                cover[when].append(pl.mask.float().mean().item())
            out["average"] = fuse(p_g, p_s, taus["end"], mode="avg").label
            for name, v in out.items():
                preds.setdefault(name, []).append(v)
            gts.append(y)
            print(f"\r{min(i + 16, n)}/{n}", end="", file=sys.stderr)
    print(file=sys.stderr)
    gt = torch.cat(gts)
    rows = {}
    for name, v in preds.items():
        d = pooled_dice(torch.cat(v), gt, k)
        rows[name] = {"dice_per_class": d, "dice_mean": sum(d) / len(d)}
    res = {"checkpoint": a.checkpoint, "images": n, "classes": spec.labels, "rows": rows,
           "uapl_coverage": {w: sum(c) / len(c) for w, c in cover.items()},
           "gt_foreground_fraction": float((gt > 0).float().mean())}
    for name, r in rows.items():
        print(f"{name:22s} Dice {100 * r['dice_mean']:6.2f} %  per class "
              + " ".join(f"{100 * d:.1f}" for d in r["dice_per_class"]))
    print("UAPL mask coverage: " + ", ".join(f"{w} {100 * c:.1f} %" for w, c in res["uapl_coverage"].items()))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
