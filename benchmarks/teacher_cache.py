"""Teacher time over a dataset: first pass (cold feature cache) vs second pass (warm cache).

    python benchmarks/teacher_cache.py --images 20        # HC18 PNGs from ../shared/data, LiteMedSAM

Each pass encodes every image through ``CachedTeacher`` and decodes one tight box per image (the part
that still runs during training). The cache lives in a temporary folder unless ``--cache-dir`` is given.
Acceptance (issue 3): warm pass < 10 % of the cold pass's teacher time.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from uncol.config import TeacherConfig
from uncol.teachers import build_teacher
from uncol.teachers.cache import CachedTeacher
from uncol.teachers.prompts import boxes_from_mask

SHARED = Path(os.environ.get("UNCOL_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def hc18(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``n`` HC18 (image (1, H, W) z-scored, label (H, W)) pairs, read with Pillow."""
    root = SHARED / "hc18_fetal_head_us"
    out = []
    for p in sorted((root / "images").glob("*_HC.png"))[:n]:
        im = np.asarray(Image.open(p).convert("L"), dtype=np.float32)
        lab = np.asarray(Image.open(root / "masks" / f"{p.stem}_mask.png"), dtype=np.int64)
        out.append((torch.from_numpy((im - im.mean()) / (im.std() + 1e-8))[None], torch.from_numpy(lab)))
    return out


def one_pass(teacher: CachedTeacher, data: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float]:
    """(encode seconds, decode seconds) over the data."""
    enc = dec = 0.0
    with torch.no_grad():
        for image, label in data:
            t0 = time.perf_counter()
            emb = teacher.encode(image[None])
            t1 = time.perf_counter()
            teacher.decode(emb, [boxes_from_mask(label, 2)], 2, tuple(image.shape[1:]))
            enc, dec = enc + t1 - t0, dec + time.perf_counter() - t1
    return enc, dec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--teacher", default="litemedsam")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--cache-dir", default=None)
    a = ap.parse_args()
    data = hc18(a.images)
    with tempfile.TemporaryDirectory() as tmp:
        cache = a.cache_dir or tmp
        teacher = build_teacher(TeacherConfig(name=a.teacher, checkpoint=a.checkpoint, cache_dir=cache), 2)
        assert isinstance(teacher, CachedTeacher)
        cold = one_pass(teacher, data)
        warm = one_pass(teacher, data)
        c = teacher.cache
        print(f"{a.teacher}, {len(data)} HC18 images, torch threads {torch.get_num_threads()}, cache {c.dir}")
        print(f"first pass : encode {cold[0]:7.2f} s + decode {cold[1]:6.2f} s = {sum(cold):7.2f} s")
        print(f"warm cache : encode {warm[0]:7.2f} s + decode {warm[1]:6.2f} s = {sum(warm):7.2f} s "
              f"({100 * sum(warm) / sum(cold):.1f} % of the first pass; hits {c.hits}, misses {c.misses})")


if __name__ == "__main__":
    main()
